import requests
from django.conf import settings
from django.core.cache import cache

PRODUCTS_CACHE_KEY = "product_objects"


def call_upstream() -> dict:
    """The slow external API the tutorial calls (httpbin's /delay/2)."""
    response = requests.get(settings.UPSTREAM_URL, timeout=settings.UPSTREAM_TIMEOUT)
    response.raise_for_status()
    return response.json()


def get_products() -> list:
    """The product list through the low-level cache API."""
    products = cache.get(PRODUCTS_CACHE_KEY)
    if products is None:
        call_upstream()  # e.g. fresh prices from a partner
        products = list(_product_model().objects.all())
        cache.set(PRODUCTS_CACHE_KEY, products, settings.CACHE_TTL)
    return products


def _product_model():
    from .models import Product

    return Product
