from django.conf import settings
from django.urls import path
from django.views.decorators.cache import cache_page

from apicalls import views

urlpatterns = [
    # No caching: every request goes to the slow upstream.
    path("", views.ApiCalls.as_view(), name="uncached"),
    # Per-view cache on the class, through method_decorator.
    path("cached/", views.CachedApiCalls.as_view(), name="cached"),
    # Per-view cache applied in the URLconf, on the uncached view.
    path("cached-in-urls/", cache_page(settings.CACHE_TTL)(views.ApiCalls.as_view()), name="cached-in-urls"),
    # Template fragment cache around the product list.
    path("fragment/", views.FragmentView.as_view(), name="fragment"),
    # Low-level cache API: the product list under one key.
    path("products/", views.ProductList.as_view(), name="products"),
]
