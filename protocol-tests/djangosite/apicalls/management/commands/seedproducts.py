from decimal import Decimal

from django.core.management.base import BaseCommand

from apicalls.models import Product


class Command(BaseCommand):
    help = "Fill the product table with a few rows (used by the measurement)."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=10)

    def handle(self, *args, count, **options):
        Product.objects.all().delete()
        Product.objects.bulk_create(
            Product(name=f"Product {i}", price=Decimal(i) + Decimal("0.99")) for i in range(1, count + 1)
        )
        self.stdout.write(f"{count} products")
