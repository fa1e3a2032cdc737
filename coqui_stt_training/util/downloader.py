"""`maybe_download(name, directory, url)`, as Coqui's notebooks call it to fetch data and models."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from ..flags.python_api import show_user_errors_as_one_line
from ..system.atomic_files import TMP_MARK
from ..system.errors import UserError


class DownloadError(UserError):
    pass


def maybe_download(archive_name: str, target_dir: str, archive_url: str) -> str:
    """`target_dir/archive_name`, downloaded from `archive_url` unless it is already there (then the
    network is not touched). The download goes to a temporary name beside it, renamed once complete, so
    that an interrupted download is never taken for the file."""
    show_user_errors_as_one_line()
    archive_path = os.path.join(target_dir, archive_name)
    if not os.path.exists(target_dir):
        print(f'No path "{target_dir}" - creating ...')
        os.makedirs(target_dir)
    if os.path.exists(archive_path):
        print(f'Found archive "{archive_path}" - not downloading.')
        return archive_path
    print(f'No archive "{archive_path}" - downloading...')
    partial = f"{archive_path}{TMP_MARK}{os.getpid()}"
    try:
        with urllib.request.urlopen(archive_url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("content-length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=archive_name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        shutil.move(partial, archive_path)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise DownloadError(f"cannot download {archive_url} to {archive_path}: {reason}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return archive_path
