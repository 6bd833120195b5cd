"""A Python function with a third-party dependency, installed once at deploy."""
import humanize

from formatting import headline


def main(event, context):
    size = int(event.get("bytes", 123456789))
    return {"size": humanize.naturalsize(size), "headline": headline(event.get("title", "report"))}
