def main(event, context):
    name = event.get("name", "world")
    print(f"greeting {name}")
    return {"hello": name, "cold": context.cold}
