"""The WeChat Official Account channel: signed callbacks in, customer-service messages out."""
