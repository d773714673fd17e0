"""The Hugging Face kind's image classifier, on tiny offline classifiers of each architecture."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from scripts.fixtures.weights.classifiers import write_tiny_classifier
from workers.models.hf_family import ImageClassifierFamily

LABELS = ["sedan", "pickup", "van", "box truck", "motorcycle"]


@pytest.fixture(scope="module", params=["vit", "resnet", "convnext"])
def classifier(request, tmp_path_factory) -> ImageClassifierFamily:
    dest = tmp_path_factory.mktemp(f"tiny-{request.param}")
    write_tiny_classifier(dest, LABELS, architecture=request.param)
    loaded = ImageClassifierFamily(dest, "cpu")
    loaded.load()
    return loaded


def test_writes_a_hugging_face_directory(tmp_path):
    write_tiny_classifier(tmp_path, LABELS)
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(LABELS))] == LABELS


def test_labels_come_from_the_model_config(classifier):
    assert classifier.labels == LABELS


def test_classify_returns_ranked_labels_with_probabilities(classifier):
    result = classifier.classify(Image.new("RGB", (90, 140), (120, 30, 200)), top_k=3)
    assert set(result) == {"label", "confidence", "top_k"}
    assert len(result["top_k"]) == 3
    scores = [entry["score"] for entry in result["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert all(entry["label"] in LABELS for entry in result["top_k"])
    assert result["label"] == result["top_k"][0]["label"]
    assert result["confidence"] == scores[0]
    assert 0.0 < sum(scores) <= 1.0 + 1e-3
    json.dumps(result)


def test_probabilities_cover_every_class_and_sum_to_one(classifier):
    images = [Image.new("L", (40, 40), 128), Image.new("RGB", (64, 30), (200, 10, 10))]  # grey is made RGB
    rows = classifier.probabilities(images)
    assert len(rows) == len(images)
    for probs in rows:
        assert len(probs) == len(LABELS)
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)


def test_a_batch_classifies_each_image_as_alone(classifier):
    images = [Image.new("RGB", (40, 40), (i * 60, 255 - i * 60, 90)) for i in range(3)]
    batched = classifier.classify_many(images, top_k=2)
    alone = [classifier.classify(image, top_k=2) for image in images]
    assert [[e["label"] for e in r["top_k"]] for r in batched] == [[e["label"] for e in r["top_k"]] for r in alone]
    for got, want in zip(batched, alone):
        assert [e["score"] for e in got["top_k"]] == pytest.approx([e["score"] for e in want["top_k"]], abs=1e-3)


def test_top_k_larger_than_the_label_set_returns_every_label(classifier):
    result = classifier.classify(Image.new("RGB", (64, 64)), top_k=50)
    assert sorted(entry["label"] for entry in result["top_k"]) == sorted(LABELS)


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        write_tiny_classifier(tmp_path, LABELS, architecture="alexnet")


def test_unload_drops_the_weights(tmp_path):
    write_tiny_classifier(tmp_path, ["a", "b"])
    loaded = ImageClassifierFamily(tmp_path, "cpu")
    loaded.load()
    loaded.unload()
    assert loaded.model is None and loaded.processor is None
    with pytest.raises(RuntimeError, match="not loaded"):
        loaded.classify(Image.new("RGB", (8, 8)))
