"""Numbers written the reader's way: 1,234.5 in English, 1.234,5 in Portuguese (the app's texts, the plots)."""


def fmt(value: float, lang: str, spec: str) -> str:
    """A number formatted with `spec` in the reader's convention: 1,234.5 in English, 1.234,5 in Portuguese."""
    text = format(value, spec)
    return text.translate(str.maketrans(",.", ".,")) if lang == "pt" else text
