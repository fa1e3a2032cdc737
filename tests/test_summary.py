import glob
import os
import struct

from coqui_stt_training.formats.crc32c import masked_crc32c
from coqui_stt_training.formats.tfevents import SummaryWriter


def read_records(path):
    """TFRecord framing: length, masked CRC of the length, data, masked CRC of the data."""
    with open(path, "rb") as f:
        data = f.read()
    records = []
    while data:
        (length,) = struct.unpack("<Q", data[:8])
        assert struct.unpack("<I", data[8:12])[0] == masked_crc32c(data[:8])
        body = data[12 : 12 + length]
        assert struct.unpack("<I", data[12 + length : 16 + length])[0] == masked_crc32c(body)
        records.append(body)
        data = data[16 + length :]
    return records


def test_scalars_land_in_one_events_file_per_kind(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    writer.scalar("train", "step_loss", 12.5, 3)
    writer.scalar("train", "step_loss", 11.0, 4)
    writer.scalar("dev", "step_loss", 20.0, 4)
    writer.close()
    train = glob.glob(os.path.join(tmp_path, "train", "events.out.tfevents.*"))
    dev = glob.glob(os.path.join(tmp_path, "dev", "events.out.tfevents.*"))
    assert len(train) == 1
    assert len(dev) == 1
    records = read_records(train[0])
    # The first record announces the file version; then one event per scalar, holding its tag and float.
    assert b"brain.Event:2" in records[0]
    assert len(records) == 3
    assert b"step_loss" in records[1]
    assert struct.pack("<f", 12.5) in records[1]
    assert struct.pack("<f", 11.0) in records[2]
