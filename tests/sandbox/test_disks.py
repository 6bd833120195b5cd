"""Which whole disks back what instances read (`frazil.sandbox.disks`), from a mount table and
a /sys/dev/block tree made for each test, and from this machine's own."""
from __future__ import annotations

import os

from frazil.sandbox import disks

MOUNTINFO = """\
27 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw
30 27 0:25 / /tmp rw - tmpfs tmpfs rw
31 27 253:0 / /srv/data rw - xfs /dev/mapper/vg-data rw
32 27 0:44 / /home rw - btrfs /nonexistent/dev rw
33 27 8:17 / /srv/my\\040disk rw - ext4 /dev/sdb1 rw
"""


def fake_sys(tmp_path):
    """/sys/dev/block with disks sda (8:0, partition 8:2), sdb (8:16, partition 8:17), dm-0 (253:0)."""
    root = tmp_path / "devices"
    for disk, majmin, parts in (("sda", "8:0", {"sda2": "8:2"}), ("sdb", "8:16", {"sdb1": "8:17"}),
                                ("dm-0", "253:0", {})):
        (root / disk).mkdir(parents=True)
        (root / disk / "dev").write_text(majmin + "\n")
        for part, part_majmin in parts.items():
            (root / disk / part).mkdir()
            (root / disk / part / "dev").write_text(part_majmin + "\n")
            (root / disk / part / "partition").write_text("1\n")
    links = tmp_path / "dev-block"
    links.mkdir()
    for target, majmin in (("sda", "8:0"), ("sda/sda2", "8:2"), ("sdb", "8:16"), ("sdb/sdb1", "8:17"),
                           ("dm-0", "253:0")):
        os.symlink(root / target, links / majmin)
    return str(links)


class TestBackingDisks:
    def test_a_partition_maps_to_its_disk_and_disks_are_listed_once(self, tmp_path):
        found = disks.backing_disks(["/", "/usr", "/srv/data/code", "/srv/my disk/x"], MOUNTINFO, fake_sys(tmp_path))
        assert found.devices == ["8:0", "253:0", "8:16"] and found.notes == []

    def test_a_path_on_no_block_device_is_noted(self, tmp_path):
        found = disks.backing_disks(["/tmp/x", "/home/u"], MOUNTINFO, fake_sys(tmp_path))
        assert found.devices == []
        assert len(found.notes) == 2 and "tmpfs" in found.notes[0]

    def test_this_machine(self):
        """Whatever holds / here is either a whole disk that /sys lists, or noted."""
        found = disks.backing_disks(["/"])
        assert found.devices or found.notes
        for device in found.devices:
            assert os.path.exists(f"/sys/dev/block/{device}")
            assert not os.path.exists(f"/sys/dev/block/{device}/partition")
