def headline(text: str) -> str:
    return text.strip().title()
