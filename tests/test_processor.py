"""M2SAProcessor and load_image: dynamic padding, truncation, and every kind of awkward image."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_m2sa import InvalidImageError, load_image


def encode(image, fmt, **save_kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def test_pads_to_longest_text_not_to_a_fixed_length(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    batch = processor(text=["short", "a somewhat longer tweet with more words in it"])
    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) < 64
    assert int(lengths.min()) < int(lengths.max())


def test_long_text_is_truncated_to_max_length(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    text = "word " * 10_000  # 50,000 characters
    assert len(text) == 50_000
    assert processor(text=[text])["input_ids"].shape == (1, processor.max_length)
    assert processor(text=[text], max_length=16)["input_ids"].shape == (1, 16)


def test_mixed_batch_marks_missing_images_with_zero_pixels(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    batch = processor(text=["a", "b", "c"], images=[Image.new("RGB", (40, 30), "red"), None, encode(Image.new("RGB", (9, 9)), "PNG")])
    assert batch["has_image"].tolist() == [True, False, True]
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert torch.count_nonzero(batch["pixel_values"][1]) == 0


def test_text_only_batch_has_no_pixel_values(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    batch = processor(text=["a", "b"])
    assert "pixel_values" not in batch
    assert batch["has_image"].tolist() == [False, False]


def test_mismatched_texts_and_images_are_refused(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="2 texts and 1 images"):
        processor(text=["a", "b"], images=[None])


def test_non_string_text_is_refused(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    with pytest.raises(TypeError, match="text 1 is a int"):
        processor(text=["a", 5])


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgb = load_image(encode(image, "PNG"))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_is_composited():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    rgb = load_image(encode(image, "PNG", transparency=0))
    assert rgb.getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb():
    image = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red in CMYK
    rgb = load_image(encode(image, "JPEG"))
    red, green, blue = rgb.getpixel((4, 4))
    assert rgb.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_grayscale_16_bit_png_is_rescaled_not_clipped():
    values = np.full((6, 6), 32768, dtype=np.uint16)  # mid-gray in 16 bits
    image = Image.fromarray(values)
    rgb = load_image(encode(image, "PNG"))
    assert rgb.mode == "RGB"
    assert abs(rgb.getpixel((0, 0))[0] - 127) <= 1


def test_grayscale_8_bit_becomes_rgb():
    rgb = load_image(Image.new("L", (3, 3), 200))
    assert rgb.getpixel((0, 0)) == (200, 200, 200)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    rgb = load_image(data)
    red, green, blue = rgb.getpixel((2, 2))
    assert red > 200 and blue < 60


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), "blue")  # stored landscape, 40 wide and 20 high
    image.paste("red", (0, 0, 20, 10))  # red top-left quadrant: where it lands tells the rotation from its mirrors
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    upright = load_image(encode(image, "JPEG", exif=exif, quality=95))
    assert upright.size == (20, 40)
    # Turned clockwise, the top-left quadrant becomes the top-right one; a transpose would leave it top-left, a
    # counter-clockwise turn would put it bottom-left. Each point is the centre of a quadrant, far from JPEG's blur.
    quadrants = {"top-left": (5, 10), "top-right": (15, 10), "bottom-left": (5, 30), "bottom-right": (15, 30)}
    colours = {name: "red" if upright.getpixel(point)[0] > 128 else "blue" for name, point in quadrants.items()}
    assert colours == {"top-left": "blue", "top-right": "red", "bottom-left": "blue", "bottom-right": "blue"}


def test_one_pixel_image_is_resized(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    batch = processor(text=["tiny"], images=[Image.new("RGB", (1, 1), "red")])
    assert batch["pixel_values"].shape == (1, 3, 32, 32)


def test_corrupt_bytes_are_refused_with_the_image_index(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    with pytest.raises(InvalidImageError, match="image 1 could not be decoded"):
        processor(text=["a", "b"], images=[None, b"definitely not an image"])


def test_truncated_jpeg_is_refused():
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImageError, match="could not be decoded"):
        load_image(data[: len(data) // 2])


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InvalidImageError, match="no file at"):
        load_image(tmp_path / "nope.jpg", index=3)


def test_decompression_bomb_is_refused(monkeypatch):
    data = encode(Image.new("L", (400, 400)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # 400x400 > 2x the limit, like 20,000^2 normally
    with pytest.raises(InvalidImageError, match="too large"):
        load_image(data)


def test_path_and_datasets_dict_inputs(tmp_path):
    path = tmp_path / "blue.png"
    Image.new("RGB", (5, 5), "blue").save(path)
    assert load_image(str(path)).getpixel((0, 0)) == (0, 0, 255)
    assert load_image({"bytes": path.read_bytes(), "path": None}).getpixel((0, 0)) == (0, 0, 255)


def test_encode_tweets_reports_unusable_images_by_row_id(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    images = [Image.new("RGB", (8, 8), "red"), b"not an image", None, {"bytes": None, "path": None}]
    encoded = processor.encode_tweets(["a", "b", "c", "d"], images, on_invalid_image="text_only",
                                      row_ids=[10, 11, 12, 13])
    assert encoded.inputs["has_image"].tolist() == [True, False, False, False]
    assert sorted(encoded.image_errors) == [11, 13]
    assert "image 11 could not be decoded" in encoded.image_errors[11]
    assert "without 'bytes' or 'path'" in encoded.image_errors[13]
    assert torch.count_nonzero(encoded.inputs["pixel_values"][1:]) == 0
    with pytest.raises(InvalidImageError, match="image 11"):
        processor.encode_tweets(["a", "b", "c", "d"], images, row_ids=[10, 11, 12, 13])
    with pytest.raises(ValueError, match="on_invalid_image must be one of"):
        processor.encode_tweets(["a"], on_invalid_image="skip")


def test_encode_tweets_without_texts_gives_image_inputs_only(tiny_model_and_processor):
    _, processor = tiny_model_and_processor
    red = Image.new("RGB", (8, 8), "red")
    encoded = processor.encode_tweets(None, [red, None])
    assert set(encoded.inputs) == {"has_image", "pixel_values"}
    assert torch.equal(encoded.inputs["pixel_values"][0], processor(text=["x"], images=[red])["pixel_values"][0])
