from django.conf import settings
from django.utils.decorators import method_decorator
from django.views.decorators.cache import cache_page
from django.views.generic import TemplateView

from .models import Product
from .services import call_upstream, get_products


class ApiCalls(TemplateView):
    template_name = "apicalls/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        call_upstream()
        context["content"] = "Results received!"
        return context


@method_decorator(cache_page(settings.CACHE_TTL), name="dispatch")
class CachedApiCalls(ApiCalls):
    pass


class FragmentView(TemplateView):
    """Only the product list fragment is cached; the rest renders each time.

    Both the upstream call and the query are lazy, so they run only when the
    template renders the fragment, i.e. when the fragment is not cached.
    """

    template_name = "apicalls/fragment.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["upstream"] = lambda: call_upstream()["url"]
        context["object_list"] = Product.objects.all()
        return context


class ProductList(TemplateView):
    template_name = "apicalls/products.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["products"] = get_products()
        context["ttl"] = settings.CACHE_TTL
        return context
