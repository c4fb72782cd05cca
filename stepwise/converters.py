"""URL converters every app's API shares (registered once, here, when first imported)."""

from django.urls import register_converter


class RowIdConverter:
    """A positive id that fits a 64-bit column: larger ones are a 404, not an overflow."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number < 2**63:
            raise ValueError(value)  # the URL does not match: 404
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowIdConverter, "id")
