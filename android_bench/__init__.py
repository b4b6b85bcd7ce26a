"""Devices that run TFLite models and time them: this CPU through LiteRT, or Android phones over ADB."""
