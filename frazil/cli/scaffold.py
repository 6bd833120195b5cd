"""`frazil init`: a new function folder to start from."""
from __future__ import annotations

from pathlib import Path

from frazil.cli.errors import UsageProblem
from frazil.deploy.config import NAME_RE

PYTHON_HANDLER = '''def main(event, context):
    """Called once per invocation; `event` is the JSON the caller sent."""
    name = event.get("name", "world")
    print(f"greeting {name}")  # lands in the invocation's logs
    return {"hello": name, "invocation_id": context.invocation_id}
'''

NODE_HANDLER = '''exports.main = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`greeting ${name}`); // lands in the invocation's logs
  return { hello: name, invocation_id: context.invocation_id };
};
'''

TOML = '''# Deploy settings; command-line flags win over these.
name = "{name}"
runtime = "{runtime}"
handler = "index.main"
memory = 128      # MB: 128 or 256
timeout = 10      # seconds
'''


def scaffold(path: Path, runtime: str) -> Path:
    name = path.name
    if not NAME_RE.match(name):
        raise UsageProblem(f"{name!r} is not a valid function name (a-z, 0-9 and '-', starting with a letter)")
    if runtime not in ("python3.11", "nodejs20"):
        raise UsageProblem(f"unknown runtime {runtime!r}; choose python3.11 or nodejs20")
    if path.exists():
        raise UsageProblem(f"{path} already exists")
    path.mkdir(parents=True)
    if runtime == "python3.11":
        (path / "index.py").write_text(PYTHON_HANDLER)
    else:
        (path / "index.js").write_text(NODE_HANDLER)
    (path / "frazil.toml").write_text(TOML.format(name=name, runtime=runtime))
    return path
