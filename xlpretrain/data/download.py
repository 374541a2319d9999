"""`xlpretrain data download|prepare`: the benchmarks' original files, and their token caches.

`download(NAME, DIR)` fetches the files kimiyoung/transformer-xl's getdata.sh fetches, checks each
against its published SHA-256, and extracts what `data.corpus=NAME, data.dir=DIR` reads (see
data/corpora.py). A download goes to FILE.part, continues where an interrupted one stopped (HTTP
Range) and is renamed to FILE once verified; archives are kept, so running it again only extracts.
`prepare(NAME, SRC)` tokenizes the corpus into the cache that training reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from xlpretrain.data import corpora
from xlpretrain.errors import UserError


@dataclasses.dataclass(frozen=True)
class Remote:
    url: str
    sha256: str | None  # None: no published checksum was found; the computed one is printed, unverified
    members: str = ""   # archives: a regex over member paths; each match is extracted...
    target: str = ""    # ...to DIR/match.expand(target)


WIKITEXT = "https://s3.amazonaws.com/research.metamind.io/wikitext/"
WIKITEXT_MEMBERS = (r"(?:^|/)wiki\.(train|valid|test)\.tokens$", r"\1.txt")
# Checksums: wikitext and enwik8 from HuggingFace datasets' dataset_infos.json (download_checksums,
# SHA-256); lm1b from tensorflow_datasets' datasets/lm1b/checksums.tsv. None were found for the others.
SOURCES = {
    "wt103": [Remote(WIKITEXT + "wikitext-103-v1.zip",
                     "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590", *WIKITEXT_MEMBERS)],
    "wt2": [Remote(WIKITEXT + "wikitext-2-v1.zip",
                   "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c", *WIKITEXT_MEMBERS)],
    "ptb": [Remote("http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz", None,
                   r"(?:^|/)data/(ptb\.(?:char\.)?(?:train|valid|test)\.txt)$", r"\1")],
    "enwik8": [Remote("http://mattmahoney.net/dc/enwik8.zip",
                      "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc", r"^enwik8$", "enwik8")],
    "text8": [Remote("http://mattmahoney.net/dc/text8.zip", None, r"^text8$", "text8")],
    "lm1b": [Remote("http://www.statmt.org/lm-benchmark/1-billion-word-language-modeling-benchmark-r13output.tar.gz",
                    "01ba60381110baf7f189dfd2b8374de371e8c9a340835793f190bdae9e90a34e",
                    r"(?:^|/)(training-monolingual\.tokenized\.shuffled/news\.en-\d{5}-of-00100|"
                    r"heldout-monolingual\.tokenized\.shuffled/news\.en\.heldout-00000-of-00050)$", r"\1"),
             Remote("https://github.com/rafaljozefowicz/lm/raw/master/" + corpora.LM1B_VOCAB, None)],
}


def download(name: str, directory: str | Path) -> None:
    """Downloads corpus `name` into `directory`, laid out as `data.dir` expects."""
    if name not in SOURCES:
        raise UserError(f"no download for {name!r}; choose one of {', '.join(SOURCES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for remote in SOURCES[name]:
        path = directory / Path(urllib.parse.urlparse(remote.url).path).name
        fetch(remote.url, path, remote.sha256)
        if remote.members:
            print(f"extracting {path.name} into {directory}")
            extract(path, directory, remote.members, remote.target)
    print(f"{name} is ready: --config.data.corpus={name} --config.data.dir={directory}")


def fetch(url: str, path: Path, sha256: str | None) -> None:
    """Puts the file at `url` in `path` unless it is there already, and checks its SHA-256."""
    if not path.is_file():
        part = path.with_name(path.name + ".part")
        _download(url, part)
        _check(part, url, sha256)
        os.replace(part, path)
    else:
        _check(path, url, sha256)


def _download(url: str, part: Path) -> None:
    """Appends the rest of `url` to `part`, from its current size when the server serves byte ranges."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the range starts at the end: an earlier try got every byte
            return
        raise UserError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot download {url} ({getattr(e, 'reason', e)}); check the network and run again, "
                        f"or put the file in {part.parent} yourself") from None
    resumed = response.status == 206  # else the server ignored the range and sends the whole file
    start = offset if resumed else 0
    total = None if response.length is None else start + response.length
    with response, open(part, "ab" if resumed else "wb") as f, \
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.name[:-len(".part")]) as bar:
        try:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))
            complete = total is None or f.tell() >= total  # a dropped connection can look like the end
        except (OSError, http.client.HTTPException):
            complete = False
        if not complete:
            raise UserError(f"the download of {url} broke off after {f.tell():,} bytes; run again to resume it")


def _check(path: Path, url: str, sha256: str | None) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if sha256 is None:
        print(f"{url}: sha256 {actual} (not verified: no published checksum was found)")
    elif actual != sha256:
        path.unlink()
        raise UserError(f"{url} gave a file with sha256 {actual}, expected {sha256}; removed {path}, "
                        f"run again to download it afresh")


def extract(archive: Path, directory: Path, members: str, target: str) -> None:
    """Writes each member of the zip or tar `archive` whose path matches the regex `members` to
    `directory / match.expand(target)`, through a temporary file renamed when complete."""
    pattern, count = re.compile(members), 0
    try:
        for name, open_member in _members(archive):
            match = pattern.search(name)
            if match:
                out = directory / match.expand(target)
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(out.name + ".part")
                with open_member() as source, open(tmp, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                os.replace(tmp, out)
                count += 1
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise UserError(f"{archive} is not a readable archive ({e}); remove it and run again to download it afresh") \
            from None
    if not count:
        raise UserError(f"{archive} holds no file matching {members}; remove it and run again to download it afresh")


def _members(archive: Path) -> Iterator[tuple[str, Callable]]:
    """(path, open) of every file in a zip or (compressed) tar archive, in archive order."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: z.open(info)
    else:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile():
                    yield member.name, lambda member=member: tar.extractfile(member)


def prepare(name: str, source: str | Path, cache: str | Path = "", overrides: list[str] = ()) -> str:
    """Tokenizes corpus `name` (data.corpus) in `source` (data.dir) into the cache that training
    reads (`cache`, or data.cache_dir's default); returns its split and vocabulary sizes."""
    # Imported here: config imports the models, which downloading does not need.
    from xlpretrain import config as config_lib

    others = [assignment for assignment in overrides if not assignment.startswith("data.")]
    if others:
        raise UserError(f"data prepare reads only --config.data.* settings, not --config.{others[0]}")
    data = config_lib.override(config_lib.defaults(), overrides).data
    data.update(corpus=name, dir=str(source))
    if cache:
        data.cache_dir = str(cache)
    config_lib.validate_data(data)
    corpus = corpora.load(data)
    sizes = ", ".join(f"{split} {len(ids):,}" for split, ids in corpus.splits.items())
    return f"{name}: {sizes} tokens; vocabulary {len(corpus.vocab):,} ({corpus.level} level)"
