/*
 * Whole-word keyword search for postveil's detector (see keywords.py).
 *
 * One Aho-Corasick automaton over every keyword list, compiled to a full transition
 * table, reads the text once. It reports only hits on whole-word boundaries, grouped
 * by keyword group, and notes where the first ASCII digit is. The text is read in
 * place in the str object's own storage (1, 2 or 4 bytes per character), so nothing
 * is copied however long the text is. Python code then runs per accepted hit only.
 *
 * An automaton is immutable once built, so one instance serves many threads.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Texts longer than this are searched with the GIL released. Shorter ones finish
 * sooner than another thread could take the GIL and give it back. */
#define RELEASE_GIL_CHARS (1 << 16)
/* Transitions in the table at most (4 bytes each): a row offset shifted left by one
 * must fit in 32 bits, and the table in 256 MB. The built-in lists need 310,000. */
#define MAX_TABLE (1 << 26)

typedef struct {
    Py_ssize_t length;      /* characters in the keyword */
    int word_start;         /* the keyword starts with a word character */
    int word_end;           /* the keyword ends with a word character */
    Py_ssize_t first_group; /* index into group_index */
    Py_ssize_t group_count;
} Keyword;

typedef struct {
    Py_UCS4 code_point;
    int32_t symbol;
} WideSymbol;

typedef struct {
    PyObject_HEAD
    int32_t symbols;          /* alphabet size; symbol 0 is every other character */
    int32_t states;
    int32_t *next;            /* states * symbols transitions, while building */
    uint32_t *steps;          /* the same transitions as search_text reads them */
    int32_t *output;          /* keyword ending at a state, or -1 */
    int32_t *output_link;     /* nearest suffix state with an output, or -1 */
    int32_t ascii_symbol[128];
    WideSymbol *wide;         /* sorted by code point */
    Py_ssize_t wide_count;
    Keyword *keywords;
    Py_ssize_t keyword_count;
    int32_t *group_index;
    PyObject *group_names;    /* tuple of str */
} Automaton;

typedef struct {
    Py_ssize_t start;
    Py_ssize_t end;
    int32_t keyword;
} Hit;

typedef struct {
    Hit *items;
    Py_ssize_t count;
    Py_ssize_t capacity;
    Py_ssize_t limit;   /* hits kept at most */
    int failed;         /* out of memory */
    int dropped;        /* hits beyond the limit were not kept */
} HitList;

static int
is_word_char(Py_UCS4 ch)
{
    if (ch < 128) {
        return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
               (ch >= 'A' && ch <= 'Z') || ch == '_';
    }
    return Py_UNICODE_ISALNUM(ch);
}

/* Mail clients often type U+2019 (right single quotation mark) for an apostrophe.
 * normalise_keyword in keywords.py turns it into "'" in keywords, and the automaton
 * reads it as "'" in texts too, so both forms match. */
static Py_UCS4
fold_quote(Py_UCS4 ch)
{
    return ch == 0x2019 ? '\'' : ch;
}

static int32_t
symbol_of(const Automaton *self, Py_UCS4 ch)
{
    ch = fold_quote(ch);
    if (ch < 128) {
        return self->ascii_symbol[ch];
    }
    Py_ssize_t low = 0, high = self->wide_count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (self->wide[middle].code_point < ch) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    if (low < self->wide_count && self->wide[low].code_point == ch) {
        return self->wide[low].symbol;
    }
    return 0;
}

static void
Automaton_dealloc(Automaton *self)
{
    PyMem_Free(self->next);
    PyMem_Free(self->steps);
    PyMem_Free(self->output);
    PyMem_Free(self->output_link);
    PyMem_Free(self->wide);
    PyMem_Free(self->keywords);
    PyMem_Free(self->group_index);
    Py_XDECREF(self->group_names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
add_wide_symbol(Automaton *self, Py_UCS4 ch, Py_ssize_t *capacity)
{
    for (Py_ssize_t i = 0; i < self->wide_count; i++) {
        if (self->wide[i].code_point == ch) {
            return 0;
        }
    }
    if (self->wide_count == *capacity) {
        Py_ssize_t grown = *capacity ? *capacity * 2 : 16;
        WideSymbol *wide = PyMem_Realloc(self->wide, grown * sizeof(WideSymbol));
        if (wide == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->wide = wide;
        *capacity = grown;
    }
    self->wide[self->wide_count].code_point = ch;
    self->wide[self->wide_count].symbol = self->symbols++;
    self->wide_count++;
    return 0;
}

static int
compare_wide(const void *left, const void *right)
{
    Py_UCS4 a = ((const WideSymbol *)left)->code_point;
    Py_UCS4 b = ((const WideSymbol *)right)->code_point;
    return (a > b) - (a < b);
}

/* Automaton(entries, group_names): entries is a sequence of (keyword, groups) with
 * keyword a non-empty str (already normalised) and groups a tuple of indexes into
 * group_names. Each keyword appears once. */
static PyObject *
Automaton_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"entries", "group_names", NULL};
    PyObject *entries_arg, *group_names_arg;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Automaton", names, &entries_arg,
                                     &group_names_arg)) {
        return NULL;
    }
    PyObject *group_names = PySequence_Tuple(group_names_arg);
    if (group_names == NULL) {
        return NULL;
    }
    PyObject *entries = PySequence_Fast(entries_arg, "entries must be a sequence");
    if (entries == NULL) {
        Py_DECREF(group_names);
        return NULL;
    }
    Automaton *self = (Automaton *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(group_names);
        Py_DECREF(entries);
        return NULL;
    }
    self->group_names = group_names;
    Py_ssize_t group_total = PyTuple_GET_SIZE(group_names);
    /* Exact str only: search() uses the names as dict keys, and a subclass's __hash__
     * or __eq__ could run Python code that frees a hit list store_hit still uses. */
    for (Py_ssize_t g = 0; g < group_total; g++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(group_names, g))) {
            PyErr_SetString(PyExc_TypeError, "group names must be str, not a subclass of str");
            goto fail;
        }
    }

    Py_ssize_t count = PySequence_Fast_GET_SIZE(entries);
    PyObject **items = PySequence_Fast_ITEMS(entries);
    self->keyword_count = count;
    self->keywords = PyMem_Calloc(count ? count : 1, sizeof(Keyword));
    if (self->keywords == NULL) {
        PyErr_NoMemory();
        goto fail;
    }

    /* First pass: check the entries, count characters and groups, and number the
     * alphabet. Symbol 0 stands for every character that no keyword contains. */
    Py_ssize_t total_chars = 0, total_groups = 0, wide_capacity = 0;
    self->symbols = 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *word, *groups;
        if (!PyTuple_Check(items[i]) || PyTuple_GET_SIZE(items[i]) != 2) {
            PyErr_SetString(PyExc_TypeError, "each entry must be a (keyword, groups) tuple");
            goto fail;
        }
        word = PyTuple_GET_ITEM(items[i], 0);
        groups = PyTuple_GET_ITEM(items[i], 1);
        if (!PyUnicode_Check(word) || PyUnicode_GET_LENGTH(word) == 0) {
            PyErr_SetString(PyExc_TypeError, "a keyword must be a non-empty str");
            goto fail;
        }
        if (!PyTuple_Check(groups) || PyTuple_GET_SIZE(groups) == 0) {
            PyErr_SetString(PyExc_TypeError, "a keyword's groups must be a non-empty tuple");
            goto fail;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(word);
        total_chars += length;
        total_groups += PyTuple_GET_SIZE(groups);
        for (Py_ssize_t k = 0; k < length; k++) {
            Py_UCS4 ch = fold_quote(PyUnicode_READ_CHAR(word, k));
            if (ch < 128) {
                if (self->ascii_symbol[ch] == 0) {
                    self->ascii_symbol[ch] = self->symbols++;
                }
            }
            else if (add_wide_symbol(self, ch, &wide_capacity) < 0) {
                goto fail;
            }
            /* Every symbol but 0 labels a trie edge into a state of its own, so the
             * table has at least symbols * symbols transitions. Failing here also
             * keeps add_wide_symbol's linear search short. */
            if ((double)self->symbols * self->symbols > MAX_TABLE) {
                goto too_large;
            }
        }
    }
    if (self->wide_count > 1) {
        qsort(self->wide, self->wide_count, sizeof(WideSymbol), compare_wide);
    }
    if (total_chars >= INT32_MAX / 2 || (double)(total_chars + 1) * self->symbols > MAX_TABLE) {
        goto too_large;
    }

    /* A keyword of several words also matches where a single line break stands for
     * one of its spaces, as in "member\nID" from a wrapped line. A paragraph break
     * reads as two spaces and still ends the match. */
    if (self->ascii_symbol[' '] != 0) {
        self->ascii_symbol['\n'] = self->ascii_symbol[' '];
    }

    /* Second pass: the trie. */
    Py_ssize_t max_states = total_chars + 1;
    int32_t symbols = self->symbols;
    self->next = PyMem_Calloc(max_states * symbols, sizeof(int32_t));
    self->output = PyMem_Malloc(max_states * sizeof(int32_t));
    self->output_link = PyMem_Malloc(max_states * sizeof(int32_t));
    self->group_index = PyMem_Malloc((total_groups ? total_groups : 1) * sizeof(int32_t));
    if (!self->next || !self->output || !self->output_link || !self->group_index) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t s = 0; s < max_states; s++) {
        self->output[s] = -1;
        self->output_link[s] = -1;
    }
    /* In the trie, 0 in next[] means "no edge": the root (state 0) is never a child. */
    int32_t states = 1;
    Py_ssize_t group_fill = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *word = PyTuple_GET_ITEM(items[i], 0);
        PyObject *groups = PyTuple_GET_ITEM(items[i], 1);
        Py_ssize_t length = PyUnicode_GET_LENGTH(word);
        int32_t state = 0;
        for (Py_ssize_t k = 0; k < length; k++) {
            int32_t symbol = symbol_of(self, PyUnicode_READ_CHAR(word, k));
            int32_t *edge = &self->next[(Py_ssize_t)state * symbols + symbol];
            if (*edge == 0) {
                *edge = states++;
            }
            state = *edge;
        }
        if (self->output[state] != -1) {
            PyErr_SetString(PyExc_ValueError, "a keyword appears twice in the entries");
            goto fail;
        }
        self->output[state] = (int32_t)i;
        Keyword *keyword = &self->keywords[i];
        keyword->length = length;
        keyword->word_start = is_word_char(PyUnicode_READ_CHAR(word, 0));
        keyword->word_end = is_word_char(PyUnicode_READ_CHAR(word, length - 1));
        keyword->first_group = group_fill;
        keyword->group_count = PyTuple_GET_SIZE(groups);
        for (Py_ssize_t g = 0; g < keyword->group_count; g++) {
            Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(groups, g));
            if (index == -1 && PyErr_Occurred()) {
                goto fail;
            }
            if (index < 0 || index >= group_total) {
                PyErr_SetString(PyExc_ValueError, "a group index is out of range");
                goto fail;
            }
            self->group_index[group_fill++] = (int32_t)index;
        }
    }
    self->states = states;

    /* Third pass, breadth first: failure links become full transitions, and each
     * state links to the nearest state on its failure chain that ends a keyword. */
    int32_t *fail_of = PyMem_Calloc(states, sizeof(int32_t));
    int32_t *queue = PyMem_Malloc(states * sizeof(int32_t));
    if (fail_of == NULL || queue == NULL) {
        PyMem_Free(fail_of);
        PyMem_Free(queue);
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t head = 0, tail = 0;
    for (int32_t symbol = 0; symbol < symbols; symbol++) {
        int32_t child = self->next[symbol];
        if (child != 0) {
            fail_of[child] = 0;
            queue[tail++] = child;
        }
    }
    while (head < tail) {
        int32_t state = queue[head++];
        int32_t fallback = fail_of[state];
        self->output_link[state] =
            self->output[fallback] != -1 ? fallback : self->output_link[fallback];
        int32_t *row = &self->next[(Py_ssize_t)state * symbols];
        const int32_t *fallback_row = &self->next[(Py_ssize_t)fallback * symbols];
        for (int32_t symbol = 0; symbol < symbols; symbol++) {
            if (row[symbol] != 0) {
                fail_of[row[symbol]] = fallback_row[symbol];
                queue[tail++] = row[symbol];
            }
            else {
                row[symbol] = fallback_row[symbol];
            }
        }
    }
    /* The root's own output link stays -1: no keyword is empty. */
    PyMem_Free(fail_of);
    PyMem_Free(queue);
    Py_ssize_t table = (Py_ssize_t)states * symbols;
    self->steps = PyMem_Malloc(table * sizeof(uint32_t));
    if (self->steps == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t t = 0; t < table; t++) {
        int32_t target = self->next[t];
        int ends_keyword = self->output[target] != -1 || self->output_link[target] != -1;
        self->steps[t] = ((uint32_t)target * (uint32_t)symbols) << 1 | (uint32_t)ends_keyword;
    }
    PyMem_Free(self->next);
    self->next = NULL;
    Py_DECREF(entries);
    return (PyObject *)self;

too_large:
    PyErr_Format(PyExc_ValueError,
                 "keyword lists are too large: the automaton would need more than %d "
                 "transitions. Use fewer keywords or fewer distinct characters.",
                 MAX_TABLE);
fail:
    Py_DECREF(entries);
    Py_DECREF(self);
    return NULL;
}

static void
add_hit(HitList *hits, Py_ssize_t start, Py_ssize_t end, int32_t keyword)
{
    if (hits->failed) {
        return;
    }
    if (hits->count >= hits->limit) {
        hits->dropped = 1;
        return;
    }
    if (hits->count == hits->capacity) {
        Py_ssize_t grown = hits->capacity ? hits->capacity * 2 : 64;
        /* Plain realloc: this may run without the GIL. */
        Hit *items = realloc(hits->items, grown * sizeof(Hit));
        if (items == NULL) {
            hits->failed = 1;
            return;
        }
        hits->items = items;
        hits->capacity = grown;
    }
    hits->items[hits->count].start = start;
    hits->items[hits->count].end = end;
    hits->items[hits->count].keyword = keyword;
    hits->count++;
}

/* Report the keywords that end at position `last` in state `state`, on whole-word
 * boundaries only. */
static inline void
report(const Automaton *self, int kind, const void *data, Py_ssize_t length,
       int32_t state, Py_ssize_t last, HitList *hits)
{
    int32_t at = self->output[state] != -1 ? state : self->output_link[state];
    /* Called only for states flagged as the end of a keyword. */
    while (at != -1) {
        int32_t index = self->output[at];
        const Keyword *keyword = &self->keywords[index];
        Py_ssize_t start = last - keyword->length + 1;
        Py_ssize_t end = last + 1;
        if (!(keyword->word_start && start > 0 &&
              is_word_char(PyUnicode_READ(kind, data, start - 1))) &&
            !(keyword->word_end && end < length &&
              is_word_char(PyUnicode_READ(kind, data, end)))) {
            add_hit(hits, start, end, index);
        }
        at = self->output_link[at];
    }
}

/* Each step's table load depends on the one before, so the loop keeps that chain
 * short: a transition stores the next state's row offset, shifted left by one, with
 * the low bit set when the state ends a keyword. */
#define SEARCH_LOOP(CHAR_TYPE)                                                      \
    do {                                                                            \
        const CHAR_TYPE *chars = (const CHAR_TYPE *)data;                           \
        for (Py_ssize_t i = 0; i < length; i++) {                                   \
            Py_UCS4 ch = chars[i];                                                  \
            int32_t symbol;                                                         \
            if (ch < 128) {                                                         \
                symbol = ascii_symbol[ch];                                          \
                if (ch - '0' < 10 && digit < 0) {                                   \
                    digit = i;                                                      \
                }                                                                   \
            }                                                                       \
            else {                                                                  \
                symbol = symbol_of(self, ch);                                       \
            }                                                                       \
            uint32_t step = next[row + symbol];                                     \
            row = step >> 1;                                                        \
            if (step & 1) {                                                         \
                report(self, kind, data, length, (int32_t)(row / symbols), i, hits); \
            }                                                                       \
        }                                                                           \
    } while (0)

static void
search_text(const Automaton *self, int kind, const void *data, Py_ssize_t length,
            HitList *hits, Py_ssize_t *first_digit)
{
    const uint32_t *next = self->steps;
    const int32_t *ascii_symbol = self->ascii_symbol;
    const uint32_t symbols = (uint32_t)self->symbols;
    uint32_t row = 0;
    Py_ssize_t digit = -1;
    switch (kind) {
    case PyUnicode_1BYTE_KIND:
        SEARCH_LOOP(Py_UCS1);
        break;
    case PyUnicode_2BYTE_KIND:
        SEARCH_LOOP(Py_UCS2);
        break;
    default:
        SEARCH_LOOP(Py_UCS4);
        break;
    }
    *first_digit = digit;
}

/* Fill spans and ends (see search_doc) from the kept hits. A hit in several groups
 * puts the same (start, end) tuple and end object in each group's lists. A group's
 * lists are made and stored at its first hit, so both dicts list the groups in order
 * of first hit. Returns -1 with an exception set on failure. */
static int
build_results(const Automaton *self, const HitList *hits, PyObject *spans, PyObject *ends)
{
    Py_ssize_t group_total = PyTuple_GET_SIZE(self->group_names);
    /* Borrowed from the dicts, which keep the lists alive. */
    PyObject **span_lists = PyMem_Calloc(group_total, sizeof(PyObject *));
    PyObject **end_lists = PyMem_Calloc(group_total, sizeof(PyObject *));
    int status = -1;
    if (span_lists == NULL || end_lists == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t h = 0; h < hits->count; h++) {
        const Hit *hit = &hits->items[h];
        const Keyword *keyword = &self->keywords[hit->keyword];
        PyObject *start = PyLong_FromSsize_t(hit->start);
        PyObject *end = PyLong_FromSsize_t(hit->end);
        PyObject *span = PyTuple_New(2);
        if (start == NULL || end == NULL || span == NULL) {
            Py_XDECREF(start);
            Py_XDECREF(end);
            Py_XDECREF(span);
            goto done;
        }
        /* The tuple takes the reference to start and one reference to end. This
         * function keeps a second reference to end until the hit is stored. */
        Py_INCREF(end);
        PyTuple_SET_ITEM(span, 0, start);
        PyTuple_SET_ITEM(span, 1, end);
        int stored = 1;
        for (Py_ssize_t g = 0; g < keyword->group_count && stored; g++) {
            int32_t group = self->group_index[keyword->first_group + g];
            if (group < 0 || group >= group_total) {
                PyErr_SetString(PyExc_RuntimeError, "keyword group index out of range");
                stored = 0;
                break;
            }
            if (span_lists[group] == NULL) {
                PyObject *name = PyTuple_GET_ITEM(self->group_names, group);
                PyObject *new_spans = PyList_New(0);
                PyObject *new_ends = PyList_New(0);
                stored = new_spans != NULL && new_ends != NULL &&
                         PyDict_SetItem(spans, name, new_spans) == 0 &&
                         PyDict_SetItem(ends, name, new_ends) == 0;
                Py_XDECREF(new_spans);
                Py_XDECREF(new_ends);
                if (!stored) {
                    break;
                }
                span_lists[group] = new_spans;
                end_lists[group] = new_ends;
            }
            stored = PyList_Append(span_lists[group], span) == 0 &&
                     PyList_Append(end_lists[group], end) == 0;
        }
        Py_DECREF(span);
        Py_DECREF(end);
        if (!stored) {
            goto done;
        }
    }
    status = 0;

done:
    PyMem_Free(span_lists);
    PyMem_Free(end_lists);
    return status;
}

PyDoc_STRVAR(search_doc,
"search(lowered, limit) -> (spans, ends, first_digit, complete)\n\n"
"Find every whole-word keyword in a lower-cased text. spans maps a group name to\n"
"its hits' (start, end) pairs and ends to their end offsets, both in order of end\n"
"offset; both are None when nothing was found. first_digit is the offset of the\n"
"first ASCII digit, or -1. U+2019 matches an apostrophe (') in a keyword. Only the\n"
"first limit hits are kept, and complete is False when more were found.");

static PyObject *
Automaton_search(Automaton *self, PyObject *args)
{
    PyObject *text;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "Un:search", &text, &limit)) {
        return NULL;
    }
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "search() limit must not be negative");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
#endif
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    HitList hits = {NULL, 0, 0, limit, 0, 0};
    Py_ssize_t first_digit = -1;
    if (length > RELEASE_GIL_CHARS) {
        /* The str is immutable and the caller holds a reference to it. */
        Py_BEGIN_ALLOW_THREADS
        search_text(self, kind, data, length, &hits, &first_digit);
        Py_END_ALLOW_THREADS
    }
    else {
        search_text(self, kind, data, length, &hits, &first_digit);
    }
    if (hits.failed) {
        free(hits.items);
        return PyErr_NoMemory();
    }
    if (hits.count == 0) {
        free(hits.items);
        return Py_BuildValue("(OOnO)", Py_None, Py_None, first_digit,
                             hits.dropped ? Py_False : Py_True);
    }
    PyObject *spans = PyDict_New();
    PyObject *ends = PyDict_New();
    if (spans == NULL || ends == NULL || build_results(self, &hits, spans, ends) < 0) {
        goto fail;
    }
    free(hits.items);
    PyObject *result = Py_BuildValue("(OOnO)", spans, ends, first_digit,
                                     hits.dropped ? Py_False : Py_True);
    Py_DECREF(spans);
    Py_DECREF(ends);
    return result;

fail:
    free(hits.items);
    Py_XDECREF(spans);
    Py_XDECREF(ends);
    return NULL;
}

static PyObject *
Automaton_get_states(Automaton *self, void *closure)
{
    return PyLong_FromLong(self->states);
}

static PyMethodDef Automaton_methods[] = {
    {"search", (PyCFunction)Automaton_search, METH_VARARGS, search_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Automaton_getset[] = {
    {"states", (getter)Automaton_get_states, NULL, "Number of automaton states.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Automaton_doc,
"Automaton(entries, group_names)\n\n"
"A whole-word keyword automaton. entries is a sequence of (keyword, groups): a\n"
"normalised keyword (non-empty str, each one once) and a tuple of indexes into\n"
"group_names, the str names that search() reports hits under.");

static PyTypeObject AutomatonType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "postveil.detection._wordscan.Automaton",
    .tp_basicsize = sizeof(Automaton),
    .tp_dealloc = (destructor)Automaton_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Automaton_doc,
    .tp_methods = Automaton_methods,
    .tp_getset = Automaton_getset,
    .tp_new = Automaton_new,
};

static struct PyModuleDef wordscan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "postveil.detection._wordscan",
    .m_doc = "Whole-word keyword search for postveil's detector.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__wordscan(void)
{
    if (PyType_Ready(&AutomatonType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&wordscan_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&AutomatonType);
    if (PyModule_AddObject(module, "Automaton", (PyObject *)&AutomatonType) < 0) {
        Py_DECREF(&AutomatonType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
