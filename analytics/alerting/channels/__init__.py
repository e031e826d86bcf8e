"""Delivery channels of alert notifications, one module each."""
