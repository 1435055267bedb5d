"""Decoding one image file into a float array, with one clear error per unreadable file.

An image keeps its colour: gray files (and 16-bit gray) decode to [H, W], colour ones (RGB, RGBA
with the alpha dropped, palette, MedMNIST RGB arrays, RGB DICOM) to [H, W, 3]. A colour file whose
three channels agree everywhere (within :data:`GRAY_TOLERANCE`; radiographs saved as RGB) is gray
and decodes exactly as a gray file does.
"""

from __future__ import annotations

import functools
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import MedaugError
from .table import roi_paths

MAX_PIXELS = 200_000_000  #: decompression-bomb guard: larger images are refused (10k x 10k radiographs are fine)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
NPZ_SEP = "::"  # "<file.npz>::<array>::<index>": one image of an array stored in a .npz
GRAY_TOLERANCE = 2  #: an 8-bit colour image whose channels differ by at most this many levels everywhere is gray
LUMA = np.array([0.299, 0.587, 0.114])  #: RGB -> luminance weights (ITU-R 601, as PIL's "L")


def load_image(path: str | Path, slice_index: int | None = None, axis: int = 2) -> np.ndarray:
    """Decode ``path`` to float32 [H, W] (gray) or [H, W, 3] (colour) in [0, 1].

    PNG/JPEG/TIFF (8 or 16 bit), DICOM (.dcm; modality and VOI LUTs, MONOCHROME1 inverted) and
    NIfTI (.nii, .nii.gz; a 2D slice: ``slice_index`` along ``axis``, default the middle one),
    and one image of an array inside a .npz file (``"<file.npz>::<array>::<index>"``, see :func:`npz_item`).
    """
    item = _npz_parts(path)
    if item is not None:
        return _load_npz_item(*item)
    path = Path(path)
    if not path.is_file():
        raise MedaugError(f"{path}: file not found; re-run `medaug data check` on the dataset")
    if path.stat().st_size == 0:
        raise MedaugError(f"{path}: empty file (0 bytes); remove it or restore it from the source")
    suffix = path.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return _load_pil(path)
    if suffix == ".dcm":
        return _load_dicom(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return _load_nifti(path, slice_index, axis)
    raise MedaugError(f"{path}: unsupported image type {suffix!r}; use PNG, JPEG, TIFF, DICOM or NIfTI")


def npz_item(npz: str | Path, array: str, index: int) -> str:
    """The index ``path`` of image ``index`` of ``array`` in ``npz`` (MedMNIST-style archives)."""
    return f"{os.path.abspath(npz)}{NPZ_SEP}{array}{NPZ_SEP}{int(index)}"


def _npz_parts(path: str | Path) -> tuple[str, str, int] | None:
    parts = str(path).rsplit(NPZ_SEP, 2)
    if len(parts) == 3 and parts[0].lower().endswith(".npz") and parts[2].isdigit():
        return parts[0], parts[1], int(parts[2])
    return None


def source_file(path: str | Path) -> str:
    """The file on disk that holds ``path``'s pixels: the .npz for an :func:`npz_item`, else ``path``."""
    item = _npz_parts(path)
    return str(path) if item is None else item[0]


def npz_header(npz: str | Path, array: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``array`` in ``npz`` from its .npy header, without reading the data."""
    try:
        with zipfile.ZipFile(npz) as zf, zf.open(array + ".npy") as fh:
            shape, _, dtype, _ = _npy_header(fh)
    except KeyError:
        raise MedaugError(f"{npz}: no array {array!r} in the archive") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MedaugError(f"{npz}: not a readable .npz archive ({exc.__class__.__name__}: {exc}); download it again") from None
    return shape, dtype


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    version = np.lib.format.read_magic(fh)
    read = getattr(np.lib.format, f"read_array_header_{version[0]}_{version[1]}", None)
    if read is None:
        raise ValueError(f".npy format version {version} is not supported")
    shape, fortran, dtype = read(fh)
    return shape, fortran, dtype, fh.tell()


@functools.lru_cache(maxsize=2)
def _npz_array(npz: str, array: str, stamp: tuple[int, int]) -> np.ndarray:
    """``array`` of ``npz``: memory-mapped when stored uncompressed (np.savez), else decompressed once.

    Cached (``stamp`` = size and mtime, so a replaced file is read again); readers visit one array
    at a time, so two entries keep memory at about one split of the archive.
    """
    with zipfile.ZipFile(npz) as zf:
        info = zf.getinfo(array + ".npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with zf.open(info) as fh:
                shape, fortran, dtype, header = _npy_header(fh)
            with open(npz, "rb") as raw:  # local file header: 30 bytes + name + extra field
                raw.seek(info.header_offset)
                name_len, extra_len = struct.unpack("<HH", raw.read(30)[26:30])
            offset = info.header_offset + 30 + name_len + extra_len + header
            if not dtype.hasobject and int(np.prod(shape)) > 0:
                return np.memmap(npz, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    with np.load(npz, allow_pickle=False) as data:
        return data[array]


def _load_npz_item(npz: str, array: str, i: int) -> np.ndarray:
    if not os.path.isfile(npz):
        raise MedaugError(f"{npz}: file not found; re-run `medaug data check` on the dataset")
    st = os.stat(npz)
    try:
        arr = _npz_array(npz, array, (st.st_size, st.st_mtime_ns))
    except KeyError:
        raise MedaugError(f"{npz}: no array {array!r} in the archive; the file does not match the dataset index") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise MedaugError(f"{npz}: cannot read array {array!r} ({exc.__class__.__name__}: {exc}); download the file again") from None
    if not 0 <= i < len(arr):
        raise MedaugError(f"{npz}: image {i} out of range 0..{len(arr) - 1} in {array!r}; the file changed since it was indexed")
    img = np.asarray(arr[i])
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3]
        if is_gray(img):
            img = img[..., 0]
    elif img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise MedaugError(f"{npz}: {array!r} holds images of shape {img.shape}; expected [H, W] or [H, W, 3]")
    if arr.dtype == np.uint8:
        return (img / 255.0).astype(np.float32)
    return _scale(img, f"{npz}: {array!r} image {i}")


def is_gray(rgb: np.ndarray) -> bool:
    """Whether colour pixels [H, W, 3] are gray: the channels differ by at most :data:`GRAY_TOLERANCE` levels
    (of 255 for 8-bit data; relative to the value range otherwise) anywhere."""
    wide = np.int16 if rgb.dtype == np.uint8 else np.float64
    r, g, b = (rgb[..., c].astype(wide) for c in range(3))
    tol = GRAY_TOLERANCE if rgb.dtype == np.uint8 else GRAY_TOLERANCE / 255 * max(float(rgb.max()) - float(rgb.min()), 1e-12)
    return bool(np.abs(r - g).max() <= tol and np.abs(g - b).max() <= tol)


def _load_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise MedaugError(f"{path}: {img.width}x{img.height} pixels is over medaug's limit of {MAX_PIXELS:,} "
                                  "(a decompression bomb?); downscale the image or remove it from the dataset")
            img.load()
            if img.width * img.height > 4096 * 4096 and img.mode in ("L", "RGB", "RGBA", "P"):
                img.thumbnail((4096, 4096), Image.Resampling.BOX)  # huge scans: shrink before float conversion
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return _scale(np.asarray(img, dtype=np.float64), str(path))
            if img.mode not in ("L", "1", "LA", "La") and not (img.mode == "P" and _gray_palette(img)):
                rgb = np.asarray(img.convert("RGB"))  # RGB, RGBA (alpha dropped), palette, CMYK, YCbCr, LAB
                if not is_gray(rgb):
                    return rgb.astype(np.float32) / 255.0
            if img.mode != "L":
                img = img.convert("L")  # gray in a colour container: luminance, as medaug always read it
            return np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MedaugError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc}); the file is corrupt or not an image") from None


def _gray_palette(img: Image.Image) -> bool:
    """A palette image whose colours are all gray (its pixels need no colour test)."""
    pal = np.asarray(img.getpalette() or [], dtype=np.uint8)
    return len(pal) > 0 and is_gray(pal[: len(pal) // 3 * 3].reshape(1, -1, 3))


def _scale(arr: np.ndarray, where: str) -> np.ndarray:
    """Robust min-max to [0, 1] (0.5 and 99.5 percentiles), float32. NaN or infinite pixels are refused, naming
    ``where`` (the file, or the archive, array and index) and the first one: no number could stand for them."""
    arr = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(v) for v in np.argwhere(bad)[0])
        raise MedaugError(f"{where}: {int(bad.sum())} NaN or infinite pixel(s), e.g. {arr[first]} at (row, column) {first}; "
                          "fix the image (or remove it from the dataset)")
    lo, hi = np.percentile(arr, [0.5, 99.5])
    if hi <= lo:
        lo, hi = arr.min(), arr.max() if arr.max() > arr.min() else arr.min() + 1.0
    return np.clip((arr - lo) / (hi - lo), 0, 1).astype(np.float32)


def _load_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise MedaugError(f"{path}: not a readable DICOM file ({exc.__class__.__name__}); the file is corrupt or not DICOM") from None
    if "PixelData" not in ds:
        raise MedaugError(f"{path}: DICOM has no pixel data (a report or structured document?); remove it from the dataset")
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise MedaugError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported; export the frame you want as its own file")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # missing decoders, truncated data
        raise MedaugError(f"{path}: cannot decode DICOM pixels ({exc.__class__.__name__}: {exc})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # colour (pydicom converts YBR to RGB)
        arr = arr[..., :3]
        if is_gray(arr):
            arr = arr.astype(np.float64) @ LUMA  # as medaug always read it
        else:
            return (arr / 255.0).astype(np.float32) if arr.dtype == np.uint8 else _scale(arr, str(path))  # one range for all channels
    else:
        arr = apply_modality_lut(arr, ds)
        if "WindowCenter" in ds:
            arr = apply_voi_lut(arr, ds)
    out = _scale(arr, str(path))
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        out = 1.0 - out  # MONOCHROME1: low values are bright
    return out


def _load_nifti(path: Path, slice_index: int | None, axis: int) -> np.ndarray:
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception as exc:  # nibabel raises several types for bad files
        raise MedaugError(f"{path}: not a readable NIfTI file ({exc.__class__.__name__}); the file is corrupt") from None
    data = np.squeeze(data)
    while data.ndim > 3:
        data = data[..., 0]  # 4D: first volume
    if data.ndim == 3:
        n = data.shape[axis]
        idx = n // 2 if slice_index is None else int(slice_index)
        if not 0 <= idx < n:
            raise MedaugError(f"{path}: slice {idx} out of range 0..{n - 1} along axis {axis}")
        data = np.take(data, idx, axis=axis)
    if data.ndim != 2:
        raise MedaugError(f"{path}: NIfTI image has shape {data.shape}; expected a 2D image or a 3D/4D volume")
    return _scale(data, str(path))


def resize(arr: np.ndarray, size: int, order: str = "area") -> np.ndarray:
    """Resize float [H, W] (or [H, W, C], channel by channel) to [size, size] (anti-aliased; 'nearest' for masks)."""
    if arr.ndim == 3:
        return np.stack([resize(arr[..., c], size, order) for c in range(arr.shape[-1])], -1)
    if arr.shape == (size, size):
        return arr
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    resample = Image.Resampling.NEAREST if order == "nearest" else Image.Resampling.BOX
    if order != "nearest" and min(arr.shape) < size:
        resample = Image.Resampling.BILINEAR
    return np.asarray(img.resize((size, size), resample=resample), dtype=np.float32)


def crop_box(arr: np.ndarray, box: tuple[int, int, int, int] | None, path: str) -> np.ndarray:
    """``arr[y1:y2, x1:x2]`` for ``box = (x1, y1, x2, y2)`` in pixels, clipped to the image; None = all."""
    if box is None:
        return arr
    x1, y1, x2, y2 = box
    h, w = arr.shape[:2]
    out = arr[min(y1, h):min(y2, h), min(x1, w):min(x2, w)]
    if out.shape[0] < 2 or out.shape[1] < 2:
        raise MedaugError(f"{path}: box {box} lies outside the {w}x{h} image; fix the box columns of its CSV row")
    return out


def load_sample(row, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and ROI of one index row, resized: (uint8 [size, size] gray or [size, size, 3] colour,
    uint8 0/1 [size, size] or None; a colour ROI file marks the pixels where any channel is non-zero)."""
    slice_index = row.get("slice", None)
    slice_index = None if slice_index in (None, "") or (isinstance(slice_index, float) and np.isnan(slice_index)) else int(slice_index)
    box = row.get("bbox", "")
    box = tuple(int(v) for v in box.split(",")) if isinstance(box, str) and box else None
    image = resize(crop_box(load_image(row["path"], slice_index), box, row["path"]), size)
    roi = None
    for mask in roi_paths(row.get("roi", "") or ""):  # several masks of one image: their union
        mask_img = load_image(mask)
        mask_img = mask_img.max(-1) if mask_img.ndim == 3 else mask_img  # a colour mask: any non-zero channel
        part = resize(crop_box(mask_img, box, mask), size, order="nearest") > 0
        roi = part if roi is None else roi | part
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), None if roi is None else roi.astype(np.uint8)
