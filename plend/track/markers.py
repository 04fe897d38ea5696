"""ArUco markers and the ChArUco board: their images, for printing and for the emulated
camera, and their geometry for pose estimation."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from plend.core.errors import PlendError, require_package

# The calibration board: a ChArUco board in its own dictionary, so that none of its
# markers can be taken for the robot's or the floor's.
BOARD_DICTIONARY = "DICT_5X5_100"
BOARD_SQUARES = (7, 5)
BOARD_SQUARE_M = 0.028
BOARD_MARKER_M = 0.021
PRINT_DPI = 300


class MarkerError(PlendError, ValueError):
    """A marker, board or image cannot be made."""


def cv2_module() -> Any:
    """OpenCV, or an error naming the install command."""
    require_package("cv2", "track")
    import cv2

    return cv2


def dictionary(name: str) -> Any:
    cv2 = cv2_module()
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))


def marker_corners(size_m: float) -> np.ndarray:
    """A marker's corners in its own frame (x right, y up, z out of the paper), in
    OpenCV's detection order: top-left, top-right, bottom-right, bottom-left."""
    h = size_m / 2
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


def marker_image(dictionary_name: str, marker_id: int, bit_px: int) -> np.ndarray:
    """The marker with one bit of white margin, ``bit_px`` pixels per bit (uint8)."""
    cv2 = cv2_module()
    d = dictionary(dictionary_name)
    bits = d.markerSize + 2
    image = cv2.aruco.generateImageMarker(d, marker_id, bits * bit_px)
    return cv2.copyMakeBorder(image, bit_px, bit_px, bit_px, bit_px, cv2.BORDER_CONSTANT, value=255)


def marker_bits(dictionary_name: str) -> int:
    """Bits across a marker, its black border included."""
    return int(dictionary(dictionary_name).markerSize) + 2


def board() -> Any:
    """The ChArUco calibration board plend prints."""
    cv2 = cv2_module()
    return cv2.aruco.CharucoBoard(BOARD_SQUARES, BOARD_SQUARE_M, BOARD_MARKER_M, dictionary(BOARD_DICTIONARY))


def board_image(px_per_m: float) -> np.ndarray:
    """The board, ``px_per_m`` pixels per metre, with a one-square white margin."""
    cols, rows = BOARD_SQUARES
    margin = round(BOARD_SQUARE_M * px_per_m)
    size = (round(cols * BOARD_SQUARE_M * px_per_m), round(rows * BOARD_SQUARE_M * px_per_m))
    cv2 = cv2_module()
    image = board().generateImage(size, marginSize=0, borderBits=1)
    return cv2.copyMakeBorder(image, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)


def png_bytes(image: np.ndarray, dpi: int = PRINT_DPI) -> bytes:
    """A greyscale PNG that prints at its true size (it records ``dpi``)."""
    cv2 = cv2_module()
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise MarkerError("cannot encode the image as PNG")
    data = encoded.tobytes()
    ppm = round(dpi / 0.0254)
    body = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


def printable_marker(dictionary_name: str, marker_id: int, size_m: float, dpi: int = PRINT_DPI) -> np.ndarray:
    """The marker at ``size_m`` (its black square) when printed at ``dpi``, with margin."""
    bits = marker_bits(dictionary_name)
    bit_px = max(4, round(size_m / bits * dpi / 0.0254))
    return marker_image(dictionary_name, marker_id, bit_px)


def printable_board(dpi: int = PRINT_DPI) -> np.ndarray:
    """The calibration board at its true size when printed at ``dpi``."""
    return board_image(dpi / 0.0254)
