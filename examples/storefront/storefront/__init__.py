"""The storefront example app (see docs/shipping.md)."""
