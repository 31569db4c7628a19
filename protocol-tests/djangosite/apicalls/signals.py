"""Drop the cached product list whenever a product changes."""

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Product
from .services import PRODUCTS_CACHE_KEY


@receiver(post_save, sender=Product, dispatch_uid="product_post_save")
def product_post_save(sender, **kwargs):
    cache.delete(PRODUCTS_CACHE_KEY)


@receiver(post_delete, sender=Product, dispatch_uid="product_post_delete")
def product_post_delete(sender, **kwargs):
    cache.delete(PRODUCTS_CACHE_KEY)
