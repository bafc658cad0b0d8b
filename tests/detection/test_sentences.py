"""A person and their health in one sentence (sentences.py), plural health words, and
a step of the reader's care done ("has been added to your record").

The cases were written for these tests. Each positive has ordinary mail of the same
shape beside it.
"""

from __future__ import annotations

import pytest

from postveil.config.detection import DetectionSection
from postveil.detection import Detector
from postveil.detection.keywords import plurals
from postveil.detection.sentences import _TITLE_BEFORE, _title_before

# (case id, text, sensitive)
SENTENCE_CASES = [
    ("full name and pronoun", "Jane Okafor had her gallbladder surgery on Monday.", True),
    (
        "given name opens the sentence",
        "Edith in room 12 refused her donepezil this morning again.",
        True,
    ),
    (
        "given name with a verb",
        "Ella has just been diagnosed with coeliac disease, so no gluten from now on.",
        True,
    ),
    (
        "given name and a pronoun",
        "Tom on my team told me yesterday that he's been diagnosed with Crohn's.",
        True,
    ),
    (
        "story, pronoun under a clinical verb",
        "Imogen Harrow lived in this room from 1840. She underwent surgery twice.",
        False,
    ),
    (
        "given name still in a protocol",
        "Ben's still in concussion protocol, neuro says another week. Sorry coach",
        True,
    ),
    (
        "team starts a protocol",
        "Our new concussion protocol for all teams starts Monday, coach Ben Harris says.",
        False,
    ),
    ("coach holds the protocol", "Dawson has the concussion protocol forms for Saturday.", False),
    ("surgeon in surgery", "Mr Kapoor is still in surgery this afternoon, he'll call you.", False),
    ("given name broke a bone", "Jonah fell off his bike Saturday and broke his wrist.", True),
    ("torn ligament", "Aiden Kowalski went down on a cut and it turns out he tore his ACL.", True),
    ("name right before own verb", "Jonah Pike tore his ACL on Sunday.", True),
    ("product right before health word", "GlucoSure Plus blood glucose test strips", False),
    (
        "kind of operation between",
        "Following up on Luis Ferreira, who had his right total knee replacement on the 2nd.",
        True,
    ),
    (
        "total of a bill",
        "Luis Ferreira had his total for the knee replacement seminar refunded.",
        False,
    ),
    (
        "pronoun refers back",
        "My dad, Harold Finch, is on your list. He takes 5mg warfarin every evening.",
        True,
    ),
    (
        "relative",
        "I wanted to let you know your mum had a fall last night. The X-ray showed no "
        "fracture but she has a large bruise on her hip.",
        True,
    ),
    (
        "courtesy title",
        "Mrs Adeyemi refused her metformin and her blood sugar was 14 mmol/L.",
        True,
    ),
    (
        "writer who names themselves",
        "Hello, this is Walter Grimsby, I had my stent put in in August and the chest "
        "pain is back.",
        True,
    ),
    (
        "pronoun and a drug after on",
        "Dale Merriweather missed group again. He has been seizure-free for six months on "
        "levetiracetam for his epilepsy.",
        True,
    ),
    (
        "writer's own drug after a self-introduction",
        "This is Rhona Kilbride, I'm registered with Dr Asante. I've only got five days "
        "left of my sertraline and my medication review is overdue.",
        True,
    ),
    (
        "person named in the paragraph before",
        "Finished the records from Lakeview Ortho for Ms. Hadley.\n\nShort version: the "
        "MRI shows a herniated disc and she had two epidural injections.",
        True,
    ),
    (
        "school nurse about a pupil",
        "Theo came to my office after PE quite wheezy. He used his inhaler and was "
        "breathing easier after 20 minutes.",
        True,
    ),
    (
        "quick note without apostrophes",
        "keep an eye on bed 4 for me, Mr Okafor, day 2 post op. hes been a bit nauseous, "
        "gave ondansetron at 6. pain ok on paracetamol.",
        True,
    ),
    ("accented given name", "René has asthma and takes salbutamol.", True),
    ("letter without a decomposition", "Łukasz has diabetes and takes metformin.", True),
    ("curly apostrophe in a surname", "Sean O’Neil has diabetes and takes metformin.", True),
    ("curly apostrophe in she's", "Ella said she’s diabetic.", True),
    ("sentence opener before a name", "Today Edith refused her donepezil and insulin.", True),
    (
        "writer who signs",
        "Hi Wen,\n\nI'm 14 weeks pregnant, due mid-August!\n\nGabi",
        True,
    ),
    (
        "writer admitted to hospital",
        "I missed the midterm. I was admitted to hospital on Monday after a severe panic "
        "attack.\n\nThank you,\nTobias Lindgren",
        True,
    ),
    (
        "titled name in an aside",
        "FYI the lady in 22 - Mrs. Abernathy - fell and has a small laceration on her forehead.",
        True,
    ),
    (
        "name after a bed number",
        "bed 12 (Harlan) pulled his IV again and his cellulitis is no better.",
        True,
    ),
    (
        "name, drug and dose",
        "Refill request received for Thomas Nguyen, warfarin 5 mg, #30. OK to fill?",
        True,
    ),
    (
        "drug for a person",
        "Can you push through the metformin for Mr. Okafor before Fri?",
        True,
    ),
    (
        "writer's drug before a new clause",
        "This is Gloria Yates. Ever since they upped my lisinopril I get woozy.",
        True,
    ),
    # Words that ordinary mail uses in other senses, tied to a person.
    ("stroke tied to a neighbour", "Gerry next door had a stroke Tuesday evening.", True),
    ("flu tied to a colleague", "Tom has been off with the flu since Monday.", True),
    ("rehab tied to a brother", "Kevin checked himself into rehab on Sunday.", True),
    # The same shapes in ordinary mail.
    (
        "speaker",
        "Dr Tamsin Achebe, Senior Lecturer in Epidemiology, will talk about diabetes.",
        False,
    ),
    (
        "list of group leaders",
        "Maya Pellegrini - heart failure caregivers, Tuesdays\n"
        "Jonas Ekberg - living with atrial fibrillation, Thursdays\n",
        False,
    ),
    (
        "historical figure, one illness in the next sentence",
        "Cornelius Abernathy built the mill in 1868. He had tuberculosis and moved west.",
        False,
    ),
    (
        "character in a draft",
        "Evelyn Thornbury feels real now; the scene where she takes Lexapro works.",
        False,
    ),
    (
        "rank before a name",
        "Captain Biscuit is a 9-year-old beagle. He is on gabapentin for his arthritis.",
        False,
    ),
    ("pet's name in a subject", "Luna's bloodwork results", False),
    (
        "given name on a work task",
        "Glucose and potassium were out of range. Marcus will lead the investigation.",
        False,
    ),
    (
        "title of a course",
        'Thank you for completing "Managing Type 2 Diabetes in Primary Care" (2.0 AMA PRA '
        "Category 1 credits).",
        False,
    ),
    (
        "two capitalised words that are no name",
        "32 bundles of architectural shingles in Weathered Wood arrive Monday.",
        False,
    ),
    (
        "name on a stock task",
        "Nina has confirmed supply of metformin and amlodipine is back to normal.",
        False,
    ),
    ("name on a print job", "Ben has the proofs for the leaflet on diabetes.", False),
    (
        "pet in a dog walker's note",
        "Quick update from today's dog walk. Bella had her gabapentin with breakfast.",
        False,
    ),
    (
        "server named like a person",
        "Stanley had a heart attack last night, so the build queue is stuck again.",
        False,
    ),
    (
        "company named after a person",
        "Harper Pharmaceuticals lost its appeal over the diabetes and kidney failure claims.",
        False,
    ),
    (
        "imagined relative in an appeal",
        "Imagine your mum has just been told she has breast cancer.",
        False,
    ),
    (
        "teacher's class in an outbreak notice",
        "Mrs Patel's class has had several children off with a stomach bug and vomiting.",
        False,
    ),
    (
        "character in a review",
        "Three stars. Nora keeps her breast cancer from her daughters until the last act.",
        False,
    ),
    (
        "sports digest",
        "PIONEERS: Clinched the division. Goalkeeper Anders Vik returned from his "
        "concussion and made 31 saves.",
        False,
    ),
    (
        "name in the next sentence after a number",
        "She was prescribed insulin at 12. Tom Brown called later.",
        False,
    ),
    ("name and health word with no verb", "Ella Stone  insulin and metformin", False),
    ("many adjectives", "Ella has the big new bad nasty severe asthma.", False),
    (
        "writer's metaphor",
        "Team, I want to know what surgery on the promo calendar looks like.\n\nGwen",
        False,
    ),
    ("drug for a person's clinic", "We ordered insulin for Dana Hollis's clinic.", False),
    ("staff directory entry", "Dana Hollis, diabetes educator, joins on Monday.", False),
    ("stroke of luck", "He had a stroke of luck with the contract.", False),
    ("swimming stroke", "Our swim coach says Tom has a strong stroke.", False),
    ("flu season", "Flu season is here: book your jab at the front desk.", False),
    ("economic depression", "The Great Depression hit the mill hard.", False),
    (
        "any reader's child",
        "Send the allergy plan if your child has a severe allergy or takes insulin.",
        False,
    ),
    (
        "product name before the health word",
        "We are recalling GlucoSure Plus blood glucose test strips; insulin is not affected.",
        False,
    ),
    (
        "place before its state",
        "Hood River, Oregon reported asthma and diabetes visits this quarter.",
        False,
    ),
    (
        "name on a career move",
        "Sarah Lin joins the team as director of the asthma and diabetes programme.",
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in SENTENCE_CASES],
    ids=[case[0] for case in SENTENCE_CASES],
)
def test_person_in_sentence(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


def test_pronoun_refers_to_the_nearest_person(detector: Detector) -> None:
    text = (
        "Mary Jones introduced Tom Brown at lunch. He was diagnosed with diabetes and "
        "takes metformin."
    )
    names = [text[f.start : f.end] for f in detector.find(text) if f.category == "patient_name"]
    assert names == ["Tom Brown"]


def test_labelled_patient_is_counted_once(detector: Detector) -> None:
    # The label names the patient; the sentence step adds nothing to it.
    verdict = detector.scan_text(
        "Patient: Dana Whitcombe\nDana Whitcombe had her knee replacement on Monday."
    )
    assert verdict.sensitive
    assert verdict.categories["patient_name"] == 1


READER_CASES = [
    (
        "step done",
        "Hi Frank, your shingles vaccine has been added to your immunisation record.",
        True,
    ),
    (
        "let you know",
        "Just to let you know your repeat of sertraline 100mg is made up and waiting.",
        True,
    ),
    ("results back", "Hi Aoife, your bloods are back and all fine apart from iron.", True),
    ("series incomplete", "Dear Brian, your hepatitis B series is incomplete.", True),
    (
        "repair heals",
        "No lifting over 10 kg from Monday until your hernia repair has healed.",
        True,
    ),
    (
        "care the reader had, earlier in the sentence",
        "We reviewed the claim for the physical therapy sessions you attended after your "
        "rotator cuff repair.",
        True,
    ),
    (
        "attended a webinar",
        "Members who attended our webinar learned how to manage your diabetes.",
        False,
    ),
    ("know your numbers", "Know your cholesterol numbers before your next check-up.", False),
    ("series in general", "A hepatitis B series is incomplete for many adults.", False),
    ("in stock", "Your shingles vaccine is in stock at every branch - book online.", False),
    (
        "general step",
        "Once a vaccine has been added to the schedule, clinics order it from us.",
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "sensitive"),
    [case[1:] for case in READER_CASES],
    ids=[case[0] for case in READER_CASES],
)
def test_reader_care_done(detector: Detector, text: str, sensitive: bool) -> None:
    assert detector.scan_text(text).sensitive is sensitive


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("chest pain", ["chest pains"]),
        ("biopsy", ["biopsies"]),
        ("abscess", ["abscesses"]),
        ("stent", ["stents"]),
        ("diabetes", []),
        ("arthritis", []),
        ("anemia", []),
        ("ct", []),
        ("x-ray", []),
    ],
)
def test_plurals(word: str, expected: list[str]) -> None:
    assert plurals(word) == expected


def test_plural_health_word_is_found(detector: Detector) -> None:
    verdict = detector.scan_text("Declan Moran had two stents put in on Thursday.")
    assert verdict.categories.get("procedure") == 1


def test_extra_tied_words_count_only_when_tied() -> None:
    detector = Detector(DetectionSection(extra_keywords={"tied_condition": ["the sniffles"]}))
    assert detector.scan_text("Harold has had the sniffles since Monday.").sensitive
    verdict = detector.scan_text("The sniffles are going round the office, Harold says.")
    assert not verdict.sensitive
    assert "condition" not in verdict.categories


TITLE_TEXTS = ["see mrs. lee", "dr.", "the st.", "xdr.", "prof.", "miss\n.", "a ms\n.", "mr x."]


def test_title_before_matches_full_search() -> None:
    """The short search finds a title wherever a search from the sentence start does."""
    for text in TITLE_TEXTS:
        for low in range(len(text) + 1):
            for position in range(low, len(text) + 1):
                expected = _TITLE_BEFORE.search(text, low, position) is not None
                assert _title_before(text, low, position) is expected, (text, low, position)
