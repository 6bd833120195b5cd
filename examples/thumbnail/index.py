"""Makes a thumbnail with ImageMagick in the function's private /tmp.

The event may carry `image_base64` (any format ImageMagick reads); without it the function
draws a test image first. Returns the thumbnail as base64 PNG with its size.
"""
import base64
import os
import subprocess
import tempfile


def main(event, context):
    work = tempfile.mkdtemp(dir="/tmp" if os.path.isdir("/tmp") else None)
    source = os.path.join(work, "source")
    if "image_base64" in event:
        with open(source, "wb") as f:
            f.write(base64.b64decode(event["image_base64"]))
    else:
        source += ".png"
        subprocess.run(["convert", "-size", "640x480", "gradient:skyblue-navy", source], check=True)
    size = int(event.get("size", 128))
    thumb = os.path.join(work, "thumb.png")
    subprocess.run(["convert", source, "-thumbnail", f"{size}x{size}", thumb], check=True)
    dims = subprocess.run(["identify", "-format", "%wx%h", thumb], check=True, capture_output=True, text=True)
    with open(thumb, "rb") as f:
        data = f.read()
    return {"size": dims.stdout.strip(), "bytes": len(data), "png_base64": base64.b64encode(data).decode()}
