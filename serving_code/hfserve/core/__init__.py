"""The encoder service every protocol calls (encoder_service.py), over the forward backend a runtime supplies."""
