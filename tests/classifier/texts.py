"""Texts the tests ask the classifier about. The rules miss the first: it names a
child's injury without an identifier they know. The shipped weights score it above
their threshold (0.97 against 0.935 when this was written), and the ordinary ones
near 0."""

MISSED_BY_RULES = (
    "Coach, Liam won't train this week, the doctor thinks it's a stress fracture in his "
    "left shin and wants a scan on Monday. Thanks, Dana"
)
ORDINARY_WITH_HEALTH_WORDS = (
    "The hospital's annual report shows 4,200 admissions for heart failure last year, up 3 percent."
)
ORDINARY = (
    "Hi all, the canteen is closed on Friday for the deep clean. Lunch vouchers are at reception."
)
