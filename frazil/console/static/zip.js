// A minimal zip writer: "stored" entries (no compression), UTF-8 names, no zip64 (the server
// refuses bundles far below 4 GiB anyway). Enough to upload a folder picked in the browser.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function dosDateTime(ms) {
  const d = new Date(ms || Date.now());
  const year = Math.max(1980, d.getFullYear());
  const time = (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1);
  const date = ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate();
  return { time, date };
}

// entries: [{name: 'dir/file.py', data: Uint8Array, mtime?: ms}] → Blob (application/zip)
export function zipStore(entries) {
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const entry of entries) {
    const name = encoder.encode(entry.name);
    const data = entry.data;
    const crc = crc32(data);
    const { time, date } = dosDateTime(entry.mtime);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true); // local file header
    local.setUint16(4, 20, true); // version needed: 2.0
    local.setUint16(6, 0x0800, true); // flags: names are UTF-8
    local.setUint16(8, 0, true); // method: stored
    local.setUint16(10, time, true);
    local.setUint16(12, date, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, name.length, true);
    local.setUint16(28, 0, true);
    parts.push(local, name, data);

    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true); // central directory header
    cd.setUint16(4, (3 << 8) | 20, true); // made by: Unix, 2.0
    cd.setUint16(6, 20, true);
    cd.setUint16(8, 0x0800, true);
    cd.setUint16(10, 0, true);
    cd.setUint16(12, time, true);
    cd.setUint16(14, date, true);
    cd.setUint32(16, crc, true);
    cd.setUint32(20, data.length, true);
    cd.setUint32(24, data.length, true);
    cd.setUint16(28, name.length, true);
    cd.setUint32(38, (0o100644 << 16) >>> 0, true); // external attributes: a regular file, rw-r--r--
    cd.setUint32(42, offset, true);
    central.push(cd, name);
    offset += 30 + name.length + data.length;
  }
  const cdSize = central.reduce((n, part) => n + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true); // end of central directory
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: 'application/zip' });
}

// What the CLI leaves out of a folder too: dependencies are built by the platform.
const SKIP_DIRS = new Set(['.git', '.hg', '__pycache__', '.venv', 'venv', 'node_modules', '.frazil', '.pytest_cache']);
const SKIP_SUFFIXES = ['.pyc', '.pyo'];

// Files from <input webkitdirectory> → {folder, kept: [{path, file}], skipped}
// Paths lose their first segment (the picked folder itself), so index.py sits at the root.
export function selectFolderFiles(fileList) {
  const kept = [];
  let skipped = 0;
  let folder = '';
  for (const file of fileList) {
    const parts = (file.webkitRelativePath || file.name).split('/');
    if (parts.length > 1) folder = folder || parts[0];
    const inner = parts.length > 1 ? parts.slice(1) : parts;
    const skip = inner.slice(0, -1).some((p) => SKIP_DIRS.has(p)) || SKIP_SUFFIXES.some((s) => file.name.endsWith(s));
    if (skip) skipped++;
    else kept.push({ path: inner.join('/'), file });
  }
  kept.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { folder, kept, skipped };
}

export async function zipFolder(kept) {
  const entries = [];
  for (const { path, file } of kept) {
    entries.push({ name: path, data: new Uint8Array(await file.arrayBuffer()), mtime: file.lastModified });
  }
  return zipStore(entries);
}
