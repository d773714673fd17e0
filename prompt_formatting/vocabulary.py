"""The prompt's own words as data: threat severities, postures, age bands, vehicle and animal types, scene tags.

A model's value printed bare in the prompt is always one of these tables' words; anything else a model
or the event supplies is printed as quoted data (see untrusted.py). The model side imports the tables
it needs from here (threat_severity, SUSPICIOUS_POSTURES, SCENE_TAG_PROMPTS), so both sides read one list.
"""

from __future__ import annotations

import re

from prompt_formatting.untrusted import clean_text

# --- labels ------------------------------------------------------------------------------------------

# Plurals the suffix rules below get wrong.
IRREGULAR_PLURALS: dict[str, str] = {
    "people": "person", "persons": "person", "knives": "knife", "children": "child", "men": "man",
    "women": "woman", "mice": "mouse", "geese": "goose", "wolves": "wolf", "calves": "calf", "sheep": "sheep",
    "deer": "deer", "bus": "bus", "buses": "bus", "busses": "bus", "gas": "gas", "glasses": "glasses",
    "series": "series", "species": "species",
}


def singular(word: str) -> str:
    """An English noun's singular by a few suffix rules ("buses" -> "bus", "lorries" -> "lorry", "cars" -> "car")."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def readable_label(value: object) -> str | None:
    """A model label as lower-case words, singular: "Pickup_Trucks" -> "pickup truck"; None when it says nothing."""
    text = clean_text(value, "label")
    if text is None:
        return None
    words = re.sub(r"[_\-\s]+", " ", text.lower()).split()
    if not words:
        return None
    return " ".join([*words[:-1], singular(words[-1])])


def words_of(label: str) -> list[str]:
    """The singular words of a normalised label, for whole-word matching ("kitchen knives" -> kitchen, knife)."""
    return [singular(w) for w in re.findall(r"[a-z0-9]+", label.lower())]


# --- threats -----------------------------------------------------------------------------------------

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")  # most severe first
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}

# Weapon words (singular, lower case) and their severity. A threat type is rated by the most severe
# word it contains; a type naming none of them is rated UNKNOWN_THREAT_SEVERITY.
THREAT_SEVERITY: dict[str, str] = {
    **dict.fromkeys(("gun", "pistol", "rifle", "handgun", "firearm", "shotgun", "revolver", "grenade",
                     "explosive", "bomb"), "critical"),
    **dict.fromkeys(("knife", "blade", "machete", "sword", "axe", "hatchet", "weapon"), "high"),
    **dict.fromkeys(("bat", "crowbar", "hammer", "tool", "pipe", "wrench", "club"), "medium"),
}
# A weapon detector's class we do not know is still a weapon: rate it high, not low, until it is tabled.
UNKNOWN_THREAT_SEVERITY = "high"


def threat_severity(threat_type: object) -> str:
    """Severity of a weapon class: firearms and explosives critical, blades high, bats and tools medium.

    Matching is by whole (singular) words, case-insensitive, so "Handgun", "kitchen knives" and
    "baseball_bat" are rated; an unknown or missing type is UNKNOWN_THREAT_SEVERITY ("high").
    """
    label = readable_label(threat_type)
    if label is None:
        return UNKNOWN_THREAT_SEVERITY
    rated = [THREAT_SEVERITY[w] for w in words_of(label) if w in THREAT_SEVERITY]
    return min(rated, key=SEVERITY_RANK.__getitem__) if rated else UNKNOWN_THREAT_SEVERITY


def severity_of(entry_severity: object, threat_type: object) -> str:
    """The severity a threat entry states when it is one of SEVERITIES, else the one its type earns."""
    stated = entry_severity.strip().lower() if isinstance(entry_severity, str) else None
    return stated if stated in SEVERITY_RANK else threat_severity(threat_type)


# Florence-2 object labels with any of these whole words are flagged as high-risk objects (the seed's
# weapon/knife/crowbar/tool, with firearms added). Whole words: "stool" and "toolbox" are not flagged.
HIGH_RISK_OBJECT_WORDS: frozenset[str] = frozenset(
    {"weapon", "knife", "crowbar", "tool", "gun", "pistol", "rifle", "handgun"}
)


def is_high_risk_object(label: object) -> bool:
    """Whether an object label names a high-risk object (whole words, plurals and case folded)."""
    normalised = readable_label(label)
    return normalised is not None and any(w in HIGH_RISK_OBJECT_WORDS for w in words_of(normalised))


# --- posture -----------------------------------------------------------------------------------------

# Posture names (as the pose model reports them) and their words in the prompt.
POSTURE_WORDS: dict[str, str] = {
    "standing": "standing",
    "walking": "walking",
    "running": "running",
    "crouching": "crouching",
    "crawling": "crawling",
    "lying_down": "lying down",
    "bending_over": "bending over",
    "arms_raised": "arms raised",
    "sitting": "sitting",
}
# Postures that matter at a door or other entrance: they are flagged in the prompt.
SUSPICIOUS_POSTURES: frozenset[str] = frozenset({"crouching", "crawling", "lying_down"})


def posture_key(value: object) -> str | None:
    """A posture name as POSTURE_WORDS keys it ("Lying down" -> "lying_down"), or None."""
    label = readable_label(value)
    return None if label is None else label.replace(" ", "_")


# --- demographics ------------------------------------------------------------------------------------

# Age groups in words over whole years, inclusive; the last group is open-ended.
AGE_BANDS: tuple[tuple[int, int | None, str], ...] = (
    (0, 12, "child"),
    (13, 17, "teenager"),
    (18, 29, "young adult"),
    (30, 44, "adult"),
    (45, 64, "middle-aged"),
    (65, None, "senior"),
)
# Group words a model may report (normalised, spaces) -> the band's word.
AGE_GROUP_WORDS: dict[str, str] = {
    "child": "child", "kid": "child", "baby": "child", "infant": "child", "toddler": "child",
    "teen": "teenager", "teenager": "teenager", "adolescent": "teenager",
    "young adult": "young adult", "adult": "adult", "middle aged": "middle-aged", "middle-aged": "middle-aged",
    "senior": "senior", "elderly": "senior", "old": "senior", "older adult": "senior",
}
OLDEST_AGE = 120


def age_group_of(years: int) -> str:
    for low, high, group in AGE_BANDS:
        if years >= low and (high is None or years <= high):
            return group
    return AGE_BANDS[-1][2]


def _band_range(group: str) -> str:
    low, high = next((lo, hi) for lo, hi, g in AGE_BANDS if g == group)
    return f"about {low} or older" if high is None else f"about {low}-{high}"


def _group_span(low: int, high: int | None) -> str:
    first, last = age_group_of(low), age_group_of(high) if high is not None else AGE_BANDS[-1][2]
    return first if first == last else f"{first} to {last}"


def describe_age(value: object) -> str | None:
    """An age estimate in words with its range: 34 -> "adult (about 30-39)", "25-32" -> "young adult to adult
    (25-32)", "60+" -> "middle-aged to senior (60 or older)", "young_adult" -> "young adult (about 18-29)".

    None when the value is not an age this reads (the caller prints it as quoted data instead).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and 0 <= value <= OLDEST_AGE:
        years = int(value)
        decade = years // 10 * 10
        return f"{age_group_of(years)} (about {decade}-{decade + 9})"
    text = clean_text(value, "label")
    if text is None:
        return None
    text = " ".join(text.lower().replace("_", " ").replace("(", " ").replace(")", " ").split())
    span = re.fullmatch(r"(\d{1,3})\s*(?:-|–|to)\s*(\d{1,3})(?: years?)?", text)
    if span and int(span[1]) <= int(span[2]) <= OLDEST_AGE:
        low, high = int(span[1]), int(span[2])
        return f"{_group_span(low, high)} ({low}-{high})"
    open_ended = re.fullmatch(r"(\d{1,3})\s*(?:\+|or older|and over|plus)", text)
    if open_ended and int(open_ended[1]) <= OLDEST_AGE:
        low = int(open_ended[1])
        return f"{_group_span(low, None)} ({low} or older)"
    point = re.fullmatch(r"(\d{1,3})(?: years?(?: old)?)?", text)
    if point and int(point[1]) <= OLDEST_AGE:
        return describe_age(int(point[1]))
    group = AGE_GROUP_WORDS.get(text)
    return f"{group} ({_band_range(group)})" if group else None


GENDER_WORDS: dict[str, str] = {
    "male": "male", "man": "male", "m": "male", "boy": "male",
    "female": "female", "woman": "female", "f": "female", "girl": "female",
}

# --- vehicles and animals ----------------------------------------------------------------------------

# Below this classifier confidence the prompt says the type is uncertain instead of naming it.
CLASSIFIER_CONFIDENCE_FLOOR = 0.4

# Normalised labels printed bare as a vehicle type (others are printed quoted).
VEHICLE_TYPES: frozenset[str] = frozenset({
    "car", "sedan", "suv", "van", "work van", "minivan", "pickup truck", "truck", "single unit truck",
    "articulated truck", "bus", "motorcycle", "scooter", "bicycle", "non motorized vehicle", "trailer",
    "ambulance", "police car", "fire truck", "taxi",
})
# Classifier classes that are not a vehicle: never named as a vehicle type.
NOT_VEHICLE_LABELS: frozenset[str] = frozenset({"background", "pedestrian", "person", "people"})

ANIMAL_TYPES: frozenset[str] = frozenset({
    "cat", "dog", "bird", "horse", "sheep", "cow", "bear", "deer", "fox", "raccoon", "squirrel", "rabbit",
    "coyote", "skunk", "opossum", "rat", "mouse",
})
NOT_ANIMAL_LABELS: frozenset[str] = frozenset({"background", "pedestrian", "person", "people", "human"})

# Transformers' placeholder class names ("LABEL_3") say nothing about the object.
PLACEHOLDER_LABEL = re.compile(r"label \d+")

# --- scene (CLIP) ------------------------------------------------------------------------------------

# The zero-shot scene tags CLIP scores each frame against (the model side imports this list).
SCENE_TAG_PROMPTS: tuple[str, ...] = (
    "a delivery at the front door",
    "a person at night",
    "a person in daylight",
    "an empty driveway",
    "a car parked in the driveway",
    "a person looking into a window",
    "a person carrying a package",
    "a group of people",
    "an animal in the yard",
    "a person walking past on the street",
    "a person climbing a fence",
)
SCENE_TAG_LIMIT = 3  # at most this many tags are printed, best first
SCENE_TAG_MIN_SCORE = 0.15  # tags scoring below this are left out


# CLIP's zero-shot weather and visibility: (the condition as the prompt names it, the text CLIP compares with).
WEATHER_PROMPTS: tuple[tuple[str, str], ...] = (
    ("rain", "a photo of a rainy scene, with rain falling and wet ground"),
    ("snow", "a photo of a snowy scene, with snow on the ground"),
    ("fog", "a photo of a foggy, misty scene with poor visibility"),
    ("clear", "a photo taken in clear, dry weather"),
    ("low light", "a dark photo taken at night in low light"),
)
