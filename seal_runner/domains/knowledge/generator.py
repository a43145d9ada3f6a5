"""Invented passages with questions: an endless, seeded supply of training contexts for the knowledge domain.

The hand-written demo passages are held out, so ReSTEM needs training contexts no model can know: every
name here is composed from syllables, every fact drawn at random. Article i depends only on (seed, i), so
any slice is stable and cheap. A policy must not win by learning one template, hence many entity kinds,
several wordings per fact, a partly shuffled sentence order, and distractor facts about a second entity of
the same kind (same value types, never asked) so that copying the right fact matters. Grading is lexical,
so every gold answer is a short span that occurs exactly once in the passage (`check_article`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from math import gcd

from seal_runner.graders.lexical import normalize_answer

# Title roots are C1 + V + C2 + S: consonant runs, one vowel, and a vowel-initial suffix, so a root
# string parses back to one tuple of parts and distinct tuples give distinct titles.
# fmt: off
_C1 = ["B", "Br", "C", "Cr", "D", "Dr", "F", "G", "Gr", "H", "K", "Kr", "L", "M", "N", "P", "Qu", "R", "S",
    "St", "T", "Th", "V", "W"]
_V = list("aeiou")
_C2 = ["rn", "ll", "nd", "rr", "st", "lm", "rw", "nt", "sk", "lb", "rk", "ng", "ssl", "rth", "mb", "lv",
    "nw", "rb", "ck", "dr"]
_S = ["ey", "ow", "ick", "olt", "ere", "ord", "en", "ington", "ard", "ess", "oor", "ith", "ale", "am", "ock"]
_ROOTS = len(_C1) * len(_V) * len(_C2) * len(_S)  # titles are unique for the first _ROOTS articles

_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t",
    "th", "v", "w", "z", "ch", "sh", "tr", "cl", "fl"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ae", "ei", "ou"]
_CODAS = ["n", "r", "l", "s", "m", "th", "sk", "rn", "ll", "nd", "rr", "st", "lm", "v", "ck"]
_FIRST_ENDS = ["a", "o", "in", "el", "ric", "ise", "an", "et", "ya", "us", "ia", "on", "ard", "wen", "ilde"]
_SURNAME_ENDS = ["ridge", "wick", "holt", "mere", "field", "ley", "den", "stone", "croft", "brook", "wright",
    "thorne", "cott", "ington", "ell", "by", "ham"]
_PLACE_ENDS = ["sey", "brow", "mark", "wick", "ham", "ness", "dale", "moor", "by", "thorpe", "stead", "wold",
    "mouth", "ley", "bury"]

COLOURS = ["ochre", "slate grey", "crimson", "teal", "saffron", "pale lilac", "cobalt blue", "russet",
    "olive green", "ivory", "amber", "charcoal", "turquoise", "mustard yellow", "burgundy", "sea green",
    "rust red", "dove grey", "violet", "copper brown"]
MATERIALS = ["granite", "sandstone", "limestone", "cast iron", "oak", "teak", "red brick", "basalt",
    "wrought iron", "slate", "larch", "chalk", "marble", "flint"]
ANIMALS = ["heron", "stoat", "stag", "hare", "kingfisher", "badger", "raven", "salmon", "lynx", "curlew",
    "swan", "fox", "boar", "wren", "falcon"]
# Asides appended to a few sentences: passage length and surface variety without extra facts.
ASIDES = ["according to the parish records", "as a worn plaque by the entrance still records",
    "a fact that local guides like to repeat", "as the county archive shows",
    "though few people today know it", "as noted in an old survey of the district",
    "according to a history written by a local schoolmaster", "which older residents still remember",
    "as several old newspaper reports confirm", "a detail often left out of guidebooks",
    "as recorded in the district almanac", "according to letters kept in the county library",
    "or so the story goes in the local inns"]
# fmt: on


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _first_name(rng: random.Random) -> str:
    return _cap(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) + rng.choice(_FIRST_ENDS))


class _Names:
    """Draws names and values for one article; no value repeats, so each gold answer can occur once."""

    def __init__(self, rng: random.Random, title_root: str) -> None:
        self.rng, self.used = rng, {title_root.lower()}

    def fresh(self, make) -> str:
        while True:
            value = make()
            if value.lower() not in self.used:
                self.used.add(value.lower())
                return value

    def _syl(self, ends: list[str]) -> str:
        r = self.rng
        return _cap(r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_CODAS) + r.choice(ends))

    def root(self) -> str:
        return self.fresh(lambda: self._syl(_PLACE_ENDS))

    def person(self) -> str:
        return self.fresh(lambda: f"{_first_name(self.rng)} {self._syl(_SURNAME_ENDS)}")


@dataclass(frozen=True)
class Kind:
    """One entity kind: title forms, slots (value maker + question wordings), sentence groups.

    `sentences[0]` is the introduction (always first); each later group is one fact or two, in 2-3
    wordings that use the same slots. `other` names the distractor entity; a distractor sentence's
    `x_<slot>` placeholders get fresh values of that slot's type."""

    name: str
    titles: tuple[str, ...]
    other: str
    slots: dict[str, tuple[str, tuple[str, ...]]]
    sentences: tuple[tuple[str, ...], ...]
    distractors: tuple[str, ...]


def _value(names: _Names, spec: str) -> str:
    """A value of type `spec`: person, root, year:LO:HI, num:LO:HI, colour, material, animal, fmt:<form
    with {R}>, or pick:a|b|c."""
    rng = names.rng
    kind, _, arg = spec.partition(":")
    if kind == "person":
        return names.person()
    if kind == "root":
        return names.root()
    if kind in ("year", "num"):
        lo, hi = map(int, arg.split(":"))
        return names.fresh(lambda: str(rng.randint(lo, hi)))
    if kind == "fmt":
        return names.fresh(lambda: arg.format(R=names._syl(_PLACE_ENDS)))
    pools = {"colour": COLOURS, "material": MATERIALS, "animal": ANIMALS}
    pool = pools.get(kind) or arg.split("|")
    return names.fresh(lambda: rng.choice(pool))


# fmt: off
KINDS: tuple[Kind, ...] = (
    Kind(
        "lighthouse", ("{R} Lighthouse", "{R} Head Light"), "{Q} Point",
        {
            "cove": ("fmt:{R} Cove", ("On which cove does the lighthouse stand?", "What bay does the lighthouse overlook?")),
            "island": ("fmt:Isle of {R}", ("On which island is the lighthouse?", "What island is {T} on?")),
            "designer": ("person", ("Who designed the lighthouse?", "Which engineer designed {T}?")),
            "lit": ("year:1790:1880", ("In what year was the lighthouse first lit?", "When was the lamp of {T} first lit?")),
            "height": ("num:18:64", ("How tall is the tower, in metres?", "How many metres high is the lighthouse?")),
            "stone": ("material", ("What material is the tower built of?", "Of what was {T} built?")),
            "colour": ("colour", ("What colour is the tower painted?", "Which colour do the keepers paint the tower?")),
            "fuel": ("pick:rapeseed oil|whale oil|paraffin|colza oil|coal gas|acetylene", ("What fuel did the original lamp burn?", "Which fuel was burned in the first lamp?")),
            "range": ("num:9:30", ("From how many nautical miles could the first lamp be seen?", "How far out to sea, in nautical miles, was the first lamp visible?")),
            "keeper": ("person", ("Who was the last resident keeper?", "Who was the final keeper to live at the lighthouse?")),
            "automated": ("year:1920:1985", ("In what year was the light automated?", "When did the lighthouse become automatic?")),
        },
        (
            ("The {T} is a coastal lighthouse on the headland of {cove}, on the northern shore of the {island}.",
             "Standing above {cove} on the {island}, the {T} has guided ships past the reefs for generations.",
             "The {T} rises from the rocks of {cove}, a sheltered bay on the {island}."),
            ("It was designed by the engineer {designer} and first lit in {lit}.",
             "The engineer {designer} drew up its plans, and the lamp was first lit in {lit}."),
            ("The tower stands {height} metres tall and is built of {stone}.",
             "Built of {stone}, the tower rises {height} metres above the waterline."),
            ("Its tower is painted {colour} so that sailors can tell it apart from other lights.",
             "Every spring the keepers repainted the tower {colour}."),
            ("The original lamp burned {fuel} and could be seen from {range} nautical miles.",
             "Burning {fuel}, its first lamp was visible {range} nautical miles out to sea."),
            ("The last resident keeper, {keeper}, left when the light was automated in {automated}.",
             "The light was automated in {automated}, ending the service of its last keeper, {keeper}."),
        ),
        ("The nearby {O} light was first lit in {x_lit}.",
         "The tower at {O}, a few miles along the coast, is painted {x_colour}.",
         "A smaller light at {O} was designed by {x_designer}."),
    ),
    Kind(
        "bridge", ("{R} Bridge", "{R} Viaduct"), "{Q} Crossing",
        {
            "river": ("fmt:River {R}", ("Which river does the bridge cross?", "What river is spanned by {T}?")),
            "town": ("root", ("Which town lies at the eastern end of the bridge?", "What town stands at the bridge's eastern end?")),
            "engineer": ("person", ("Who was the bridge's engineer?", "Which engineer built {T}?")),
            "opened": ("year:1760:1910", ("In what year did the bridge open?", "When was {T} opened to traffic?")),
            "arches": ("num:3:21", ("How many arches does the bridge have?", "What is the number of arches in the bridge?")),
            "length": ("num:80:640", ("How long is the bridge, in metres?", "What is the length of {T} in metres?")),
            "material": ("material", ("What material are the piers made of?", "Of what material were the piers built?")),
            "toll": ("pick:a farthing|a halfpenny|a penny|two pennies|a silver groat", ("What was the toll for crossing on foot?", "How much did a walker pay to cross?")),
            "colour": ("colour", ("What colour are the railings painted?", "Which colour were the railings painted?")),
            "flood": ("year:1911:1990", ("In what year did a flood damage the bridge?", "When was the bridge damaged by a flood?")),
        },
        (
            ("The {T} carries a road across the {river} at the market town of {town}.",
             "Spanning the {river}, the {T} links the farmland to the west with the town of {town}.",
             "The {T} is a road bridge over the {river}, ending on its eastern bank in {town}."),
            ("It was built by the engineer {engineer} and opened in {opened}.",
             "The engineer {engineer} oversaw its construction, and it opened in {opened}."),
            ("The bridge has {arches} arches and is {length} metres long.",
             "Its {arches} arches carry the road over a total length of {length} metres."),
            ("Its piers are made of {material}, quarried a few miles upstream.",
             "The piers were built of {material} brought in by barge."),
            ("Until the tolls were abolished, a walker paid {toll} to cross.",
             "Crossing on foot once cost {toll}, collected at a small stone lodge."),
            ("Its railings are painted {colour}.",
             "The railings, painted {colour}, were added by the town council."),
            ("A flood in {flood} washed away part of the parapet, which was later rebuilt.",
             "The parapet had to be rebuilt after a flood in {flood}."),
        ),
        ("The older {O} bridge downstream opened in {x_opened}.",
         "The railings of the {O} bridge upstream are painted {x_colour}.",
         "The nearby {O} bridge was designed by {x_engineer}."),
    ),
    Kind(
        "museum", ("{R} Museum", "{R} Museum of Curiosities", "{R} Gallery"), "{Q} Collection",
        {
            "city": ("root", ("In which city is the museum?", "What city is {T} located in?")),
            "founder": ("person", ("Who founded the museum?", "Whose bequest established {T}?")),
            "founded": ("year:1780:1930", ("In what year was the museum founded?", "When did {T} open?")),
            "building": ("pick:a former corn exchange|a converted tannery|an old customs house|a disused tram depot|a former grammar school", ("What building houses the museum?", "What did the museum's building used to be?")),
            "objects": ("num:1200:9800", ("How many objects are in the collection?", "What is the size of the collection, in objects?")),
            "treasure": ("pick:a bronze astrolabe|a jade chess set|a silver ship model|a clockwork owl|an ivory globe|a painted harp", ("What is the most famous object in the collection?", "Which object is the museum best known for?")),
            "curator": ("person", ("Who is the current curator?", "Who curates the museum today?")),
            "visitors": ("num:12000:95000", ("How many visitors does the museum receive each year?", "What is the annual number of visitors?")),
            "colour": ("colour", ("What colour is the front door?", "Which colour is the museum's front door painted?")),
            "wing": ("year:1950:2015", ("In what year was the new wing added?", "When was the museum's new wing built?")),
        },
        (
            ("The {T} is a museum of local history in the city of {city}, housed in {building}.",
             "Housed in {building} in the city of {city}, the {T} holds collections of local history.",
             "The {T} occupies {building} in {city} and is known for its eccentric displays."),
            ("It was founded in {founded} with the bequest of the collector {founder}.",
             "The collector {founder} left the objects that formed the museum, which opened in {founded}."),
            ("The collection now numbers {objects} objects, the most famous being {treasure}.",
             "Of its {objects} objects, visitors most often ask to see {treasure}."),
            ("The current curator is {curator}, who has catalogued much of the store room.",
             "Since the last reorganisation the museum has been run by the curator {curator}."),
            ("About {visitors} people visit each year.",
             "The museum welcomes around {visitors} visitors a year."),
            ("Its front door is painted {colour}, and a new wing was added in {wing}.",
             "A new wing opened in {wing}, and the old front door was repainted {colour}."),
        ),
        ("The rival {O} in the same city was founded in {x_founded}.",
         "The {O}, a smaller museum nearby, is run by {x_curator}.",
         "The {O} across the square receives about {x_visitors} visitors a year."),
    ),
    Kind(
        "ship", ("SS {R}", "HMS {R}", "{R} Packet"), "the {Q}",
        {
            "yard": ("fmt:{R} Yard", ("At which shipyard was the ship built?", "Which yard built the ship?")),
            "launched": ("year:1820:1925", ("In what year was the ship launched?", "When was {T} launched?")),
            "builder": ("person", ("Who was the ship's master builder?", "Which master builder built {T}?")),
            "length": ("num:40:190", ("How long was the ship, in metres?", "What was the ship's length in metres?")),
            "crew": ("num:18:140", ("How many sailors made up the crew?", "What was the size of the crew?")),
            "cargo": ("pick:tea|salt cod|timber|wool|coal|indigo|copper ore|raisins", ("What cargo did the ship mostly carry?", "Which cargo made up most of the ship's loads?")),
            "port": ("root", ("What was the ship's home port?", "From which port did the ship sail?")),
            "captain": ("person", ("Who was the ship's first captain?", "Who first commanded {T}?")),
            "hull": ("colour", ("What colour was the hull painted?", "Which colour was the ship's hull?")),
            "fate": ("year:1926:1975", ("In what year was the ship broken up?", "When was the ship scrapped?")),
        },
        (
            ("{T} was a merchant ship launched in {launched} at the {yard}.",
             "Built at the {yard}, {T} was launched in {launched} as a merchant vessel.",
             "{T} was a cargo ship that slid down the slipway of the {yard} in {launched}."),
            ("She was built under the master builder {builder} and measured {length} metres from bow to stern.",
             "The master builder {builder} designed her hull, which measured {length} metres."),
            ("Her crew numbered {crew}, and her first captain was {captain}.",
             "Under her first captain, {captain}, she sailed with a crew of {crew}."),
            ("She mostly carried {cargo} and sailed from the port of {port}.",
             "Sailing from her home port of {port}, she carried chiefly {cargo}."),
            ("Her hull was painted {hull} with a white band along the gunwale.",
             "Sailors knew her at a distance by her {hull} hull."),
            ("She was broken up in {fate}.",
             "After decades of service she was scrapped in {fate}."),
        ),
        ("Her sister ship, {O}, was launched in {x_launched}.",
         "The rival vessel {O} carried a crew of {x_crew}.",
         "The hull of {O}, which sailed the same route, was painted {x_hull}."),
    ),
    Kind(
        "town", ("{R}", "{R} Magna", "Upper {R}"), "{Q}",
        {
            "river": ("fmt:River {R}", ("On which river does the town stand?", "What river flows through the town?")),
            "county": ("fmt:{R}shire", ("In which county is the town?", "What county is the town part of?")),
            "charter": ("year:1180:1650", ("In what year did the town receive its market charter?", "When was the market charter granted?")),
            "population": ("num:2100:18900", ("What is the town's population?", "How many people live in the town?")),
            "industry": ("pick:rope making|glove making|brewing|bell founding|tanning|lace making|clock making", ("What industry was the town known for?", "Which trade made the town prosperous?")),
            "church": ("fmt:St {R}'s", ("What is the name of the parish church?", "Which church is the town's parish church?")),
            "spire": ("num:30:72", ("How tall is the church spire, in metres?", "What is the height of the spire in metres?")),
            "mayor": ("person", ("Who was the town's first mayor?", "Who served as first mayor?")),
            "market": ("pick:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday", ("On what day is the weekly market held?", "Which day of the week is market day?")),
            "stone": ("material", ("What material are the older houses built of?", "Of what are the old houses built?")),
        },
        (
            ("{T} is a small market town on the {river} in {county}.",
             "Lying on the banks of the {river}, {T} is the oldest market town in {county}.",
             "{T} is a town in {county}, built where an old road fords the {river}."),
            ("It received its market charter in {charter}, and a market is still held every {market}.",
             "The market, chartered in {charter}, still fills the square each {market}."),
            ("The town has a population of {population}.",
             "Some {population} people live in the town today."),
            ("It grew rich on {industry}, and its older houses are built of {stone}.",
             "Its wealth came from {industry}, which paid for the {stone} houses of the high street."),
            ("The parish church of {church} has a spire {spire} metres tall.",
             "The spire of {church}, the parish church, rises {spire} metres over the square."),
            ("The town's first mayor was {mayor}.",
             "After the town was incorporated, {mayor} was elected its first mayor."),
        ),
        ("The neighbouring town of {O} has a population of {x_population}.",
         "Nearby {O} was granted its own charter in {x_charter}.",
         "Neighbouring {O} was known for {x_industry}."),
    ),
    Kind(
        "festival", ("{R} Lantern Festival", "{R} Harvest Fair", "{R} Cheese Rolling"), "{Q} Fair",
        {
            "village": ("root", ("In which village is the festival held?", "What village hosts the festival?")),
            "first": ("year:1650:1950", ("In what year was the festival first held?", "When did the festival begin?")),
            "founder": ("person", ("Who started the festival?", "Who is credited with founding the festival?")),
            "month": ("pick:March|April|May|June|July|August|September|October", ("In what month is the festival held?", "Which month does the festival take place in?")),
            "days": ("num:2:9", ("How many days does the festival last?", "For how many days does the festival run?")),
            "visitors": ("num:3000:48000", ("How many visitors attend each year?", "What is the festival's yearly attendance?")),
            "food": ("pick:honey cakes|pickled eels|ginger bread|roast chestnuts|plum dumplings|saffron buns", ("What food is traditionally eaten at the festival?", "Which dish is associated with the festival?")),
            "colour": ("colour", ("What colour ribbons do the dancers wear?", "Which colour are the dancers' ribbons?")),
            "prize": ("pick:a silver ladle|a carved crook|a brass bell|a copper kettle|a painted oar", ("What is the prize for the winner?", "What does the winner receive?")),
            "animal": ("animal", ("What animal is carried in effigy in the procession?", "Which animal's effigy leads the procession?")),
        },
        (
            ("The {T} is held every {month} in the village of {village}.",
             "Each {month}, the village of {village} hosts the {T}.",
             "The {T} takes place in {village} every year in {month}."),
            ("It was first held in {first}, when the miller {founder} organised a feast for the harvest.",
             "According to the parish records, {founder} started the festival in {first}."),
            ("It lasts {days} days and draws about {visitors} visitors.",
             "Around {visitors} visitors come for the {days} days of celebrations."),
            ("The traditional food is {food}, sold from stalls around the green.",
             "Stalls on the green sell {food}, the festival's traditional fare."),
            ("Dancers wear {colour} ribbons, and the procession is led by the effigy of a {animal}.",
             "A giant effigy of a {animal} leads the procession, followed by dancers in {colour} ribbons."),
            ("The winner of the final race receives {prize}.",
             "The champion of the closing race is awarded {prize}."),
        ),
        ("The smaller {O} in the next valley was first held in {x_first}.",
         "At the rival {O}, dancers wear {x_colour} ribbons.",
         "The {O} nearby attracts about {x_visitors} visitors."),
    ),
    Kind(
        "company", ("{R} & Sons", "{R} Instrument Company", "{R} Lamp Works"), "{Q} Brothers",
        {
            "town": ("root", ("In which town is the company based?", "Where does the company have its works?")),
            "founder": ("person", ("Who founded the company?", "Who started the company?")),
            "founded": ("year:1790:1935", ("In what year was the company founded?", "When was the company established?")),
            "product": ("pick:brass barometers|ship chronometers|enamel signs|paraffin lamps|pocket compasses|surveying levels|tin whistles", ("What was the company's first product?", "Which product did the company first make?")),
            "workers": ("num:40:2600", ("How many workers did the company employ at its peak?", "What was the largest size of the workforce?")),
            "brand": ("fmt:{R} Star", ("What is the name of the company's best-selling model?", "Which model sold best?")),
            "partner": ("person", ("Who became the founder's partner?", "Who joined the founder as a partner?")),
            "colour": ("colour", ("What colour is the company's emblem?", "Which colour is the emblem?")),
            "emblem": ("animal", ("What animal appears on the emblem?", "Which animal is shown on the company's emblem?")),
            "closed": ("year:1936:2010", ("In what year did the works close?", "When did the company's works shut down?")),
        },
        (
            ("{T} was a manufacturer in the town of {town}, founded in {founded} by {founder}.",
             "Founded by {founder} in {founded}, {T} had its works in {town}.",
             "{T} began in {founded} as a workshop in {town} run by {founder}."),
            ("Its first product was {product}, sold by mail order across the country.",
             "The workshop started out making {product} for shops in the surrounding towns."),
            ("The founder's partner, {partner}, designed its best-selling model, the {brand}.",
             "Its best-selling model, the {brand}, was designed by the founder's partner {partner}."),
            ("At its peak the company employed {workers} workers.",
             "The works grew until {workers} people were on the payroll."),
            ("Its emblem shows a {emblem} in {colour}.",
             "Every product carried the emblem of a {emblem}, printed in {colour}."),
            ("The works closed in {closed}, and the buildings were later turned into flats.",
             "After years of decline the works shut in {closed}."),
        ),
        ("Its competitor {O} was founded in {x_founded}.",
         "The rival firm {O} employed {x_workers} people.",
         "Across town, {O} had been started by {x_founder}."),
    ),
    Kind(
        "scientist", ("{F} {R}",), "{Q}",
        {
            "born": ("year:1760:1890", ("In what year was the scientist born?", "When was {T} born?")),
            "village": ("root", ("In which village was the scientist born?", "Where was {T} born?")),
            "field": ("pick:botany|astronomy|geology|chemistry|entomology|meteorology|optics", ("What field did the scientist study?", "Which science was the scientist's field?")),
            "discovery": ("pick:a new comet|a blue lichen|a rare feldspar|a cave moth|a dark nebula|a red alga", ("What did the scientist discover?", "Which discovery made {T} famous?")),
            "year": ("year:1891:1935", ("In what year was the discovery made?", "When did the famous discovery happen?")),
            "teacher": ("person", ("Who was the scientist's teacher?", "Who taught {T}?")),
            "books": ("num:3:29", ("How many books did the scientist publish?", "What number of books did {T} write?")),
            "instrument": ("pick:a brass telescope|a glass prism|a field microscope|a mercury barometer|a spirit level", ("What instrument did the scientist use?", "Which instrument did {T} use for most observations?")),
            "died": ("year:1936:1960", ("In what year did the scientist die?", "When did {T} die?")),
            "society": ("fmt:{R} Society", ("Which society awarded the scientist a medal?", "What society gave {T} its gold medal?")),
        },
        (
            ("{T} was a scientist born in {born} in the village of {village}.",
             "Born in {born} in the village of {village}, {T} became a self-taught scientist.",
             "The scientist {T} was born in {village} in {born}."),
            ("The scientist studied {field} under the teacher {teacher}.",
             "Trained in {field} by {teacher}, the young scientist worked mostly alone."),
            ("The discovery of {discovery} in {year} made the scientist famous.",
             "Fame came in {year} with the discovery of {discovery}."),
            ("Most observations were made with {instrument}.",
             "The scientist's constant companion in the field was {instrument}."),
            ("Over a long career the scientist published {books} books.",
             "In all, {books} books appeared under the scientist's name."),
            ("The {society} awarded the scientist its gold medal a year before the scientist died in {died}.",
             "Late in life the scientist received the gold medal of the {society}, and died in {died}."),
        ),
        ("A rival, {x_teacher}, claimed a similar discovery.",
         "A colleague from {O} was born in {x_born}.",
         "A younger colleague published {x_books} books on the same subject."),
    ),
    Kind(
        "mountain", ("Mount {R}", "{R} Fell", "{R} Pike"), "{Q} Crag",
        {
            "range": ("fmt:{R} Hills", ("In which range does the mountain stand?", "What range is the mountain part of?")),
            "height": ("num:610:2980", ("How high is the summit, in metres?", "What is the height of the summit in metres?")),
            "first": ("year:1780:1920", ("In what year was the mountain first climbed?", "When was the first ascent?")),
            "climber": ("person", ("Who made the first ascent?", "Who first reached the summit?")),
            "rock": ("material", ("What rock is the mountain made of?", "Of what rock is the summit made?")),
            "lake": ("fmt:Lake {R}", ("Which lake lies at the foot of the mountain?", "What lake is below the mountain?")),
            "hut": ("fmt:{R} Hut", ("What is the name of the refuge hut?", "Which hut shelters climbers?")),
            "beds": ("num:6:48", ("How many beds does the hut have?", "How many people can sleep in the hut?")),
            "flower": ("pick:gentian|edelweiss|saxifrage|moss campion|alpine aster", ("What flower grows near the summit?", "Which flower is found near the summit?")),
            "route": ("pick:the Chimney|the Knife Edge|the Long Gully|the Grey Stair|the Ladder", ("What is the usual route to the summit called?", "Which route do most climbers take?")),
        },
        (
            ("{T} is the highest peak of the {range}, rising to {height} metres.",
             "Rising {height} metres above sea level, {T} crowns the {range}.",
             "{T} stands at the centre of the {range} and reaches {height} metres."),
            ("It was first climbed in {first} by {climber}.",
             "The first ascent was made by {climber} in {first}."),
            ("The mountain is made of {rock}, and {lake} lies at its foot.",
             "Below its {rock} cliffs lies {lake}, which freezes in hard winters."),
            ("Climbers shelter in the {hut}, which has {beds} beds.",
             "The {hut}, with {beds} beds, is the only shelter on the mountain."),
            ("Most climbers follow a route called {route}.",
             "The usual way up is a ridge known as {route}."),
            ("Near the summit grows {flower}, found nowhere else in the region.",
             "The slopes below the summit are known for {flower}."),
        ),
        ("The neighbouring {O} rises to {x_height} metres.",
         "Nearby {O} was first climbed in {x_first}.",
         "The lower {O} was first climbed by {x_climber}."),
    ),
    Kind(
        "orchestra", ("{R} Philharmonic", "{R} Chamber Orchestra", "{R} Brass Band"), "{Q} Players",
        {
            "city": ("root", ("In which city is the orchestra based?", "What city is the orchestra's home?")),
            "founded": ("year:1810:1950", ("In what year was the orchestra founded?", "When was the orchestra formed?")),
            "founder": ("person", ("Who founded the orchestra?", "Who formed the orchestra?")),
            "hall": ("fmt:{R} Hall", ("In which hall does the orchestra perform?", "What is the orchestra's concert hall?")),
            "seats": ("num:400:2400", ("How many seats does the hall have?", "What is the seating capacity of the hall?")),
            "players": ("num:24:110", ("How many musicians does the orchestra have?", "How many players are in the orchestra?")),
            "conductor": ("person", ("Who is the principal conductor?", "Who conducts the orchestra today?")),
            "work": ("fmt:{R} Symphony", ("What work was written for the orchestra?", "Which symphony was composed for the orchestra?")),
            "colour": ("colour", ("What colour are the players' jackets?", "Which colour jackets do the musicians wear?")),
            "tour": ("year:1951:2015", ("In what year did the orchestra first tour abroad?", "When was the first foreign tour?")),
        },
        (
            ("The {T} is an orchestra based in the city of {city}, founded in {founded}.",
             "Founded in {founded}, the {T} is the oldest orchestra in {city}.",
             "The {T} has played in {city} since it was formed in {founded}."),
            ("It was founded by the violinist {founder}, who also led it from the first desk.",
             "The violinist {founder} gathered its first members from the pit bands of local theatres."),
            ("It performs in the {hall}, which seats {seats}.",
             "Its home is the {hall}, with {seats} seats."),
            ("The orchestra has {players} musicians, led by the principal conductor {conductor}.",
             "Its principal conductor, {conductor}, leads {players} musicians."),
            ("Its best-known commission is the {work}, premiered on a winter evening.",
             "The composer of the {work} wrote it for the orchestra."),
            ("The players wear {colour} jackets, a custom since the first foreign tour in {tour}.",
             "Since its first tour abroad in {tour}, the players have worn {colour} jackets."),
        ),
        ("The rival {O} was founded in {x_founded}.",
         "The {O} across the river is conducted by {x_conductor}.",
         "The smaller {O} has {x_players} musicians."),
    ),
    Kind(
        "mine", ("{R} Mine", "{R} Colliery", "{R} Quarry"), "{Q} Pit",
        {
            "valley": ("fmt:{R} Valley", ("In which valley is the mine?", "What valley is the mine in?")),
            "ore": ("pick:tin|lead|copper|silver|zinc|iron|slate", ("What was mined there?", "Which ore did the mine produce?")),
            "opened": ("year:1700:1880", ("In what year did the mine open?", "When was the mine opened?")),
            "owner": ("person", ("Who owned the mine?", "Who was the mine's owner?")),
            "depth": ("num:90:880", ("How deep is the main shaft, in metres?", "What is the depth of the main shaft in metres?")),
            "miners": ("num:60:1400", ("How many miners worked there at its peak?", "What was the peak workforce of miners?")),
            "engine": ("fmt:{R} Engine", ("What was the pumping engine called?", "Which engine pumped water from the mine?")),
            "tonnes": ("num:1200:9000", ("How many tonnes of ore did the mine produce in its best year?", "What was the output in the best year, in tonnes?")),
            "closed": ("year:1881:1990", ("In what year did the mine close?", "When was the mine closed?")),
            "pony": ("pick:Bramble|Nutmeg|Pepper|Thistle|Clover|Sorrel", ("What was the name of the last pit pony?", "Which pit pony was the last to work there?")),
        },
        (
            ("The {T} is a disused {ore} mine in the {valley}.",
             "In the {valley} stand the ruins of the {T}, once a busy {ore} mine.",
             "The {T} worked {ore} deposits beneath the {valley}."),
            ("It opened in {opened} under the ownership of {owner}.",
             "The landowner {owner} opened it in {opened}."),
            ("Its main shaft reached a depth of {depth} metres.",
             "The main shaft was sunk to {depth} metres."),
            ("At its peak, {miners} miners produced {tonnes} tonnes of ore in a single year.",
             "In its best year it yielded {tonnes} tonnes of ore, worked by {miners} miners."),
            ("Water was pumped out by the {engine}, a beam engine housed in a tall chimneyed building.",
             "A beam engine known as the {engine} kept the lower levels dry."),
            ("The mine closed in {closed}, and its last pit pony, {pony}, was retired to a farm.",
             "When the mine closed in {closed}, the last pit pony, {pony}, went to a farm."),
        ),
        ("The nearby {O} opened in {x_opened}.",
         "The neighbouring {O} was owned by {x_owner}.",
         "At the smaller {O}, the shaft reached {x_depth} metres."),
    ),
    Kind(
        "monastery", ("{R} Abbey", "{R} Priory", "Monastery of St {R}"), "{Q} Priory",
        {
            "order": ("pick:Benedictine|Cistercian|Carthusian|Augustinian|Premonstratensian", ("To which order did the monks belong?", "Which religious order ran the house?")),
            "founded": ("year:1080:1320", ("In what year was the monastery founded?", "When was the house founded?")),
            "founder": ("person", ("Who founded the monastery?", "Whose gift of land founded the house?")),
            "monks": ("num:12:90", ("How many monks lived there at its height?", "What was the greatest number of monks?")),
            "stone": ("material", ("What stone was the church built of?", "Of what material is the church built?")),
            "abbot": ("person", ("Who was the last abbot?", "Who led the house at its dissolution?")),
            "dissolved": ("year:1500:1560", ("In what year was the monastery dissolved?", "When was the house dissolved?")),
            "product": ("pick:honey mead|blackberry wine|herb cheese|beeswax candles|rye bread", ("What did the monks produce for sale?", "Which product did the monks sell?")),
            "bells": ("num:2:11", ("How many bells hung in the tower?", "What was the number of bells?")),
            "manuscript": ("fmt:{R} Psalter", ("What manuscript was made there?", "Which illuminated book was produced there?")),
        },
        (
            ("{T} was a {order} monastery founded in {founded} by the landowner {founder}.",
             "The landowner {founder} gave the land for {T}, a {order} house founded in {founded}.",
             "Founded in {founded} by {founder}, {T} belonged to the {order} order."),
            ("At its height it housed {monks} monks.",
             "Some {monks} monks lived there at its height."),
            ("Its church was built of {stone}, and its tower held {bells} bells.",
             "The {stone} church had a tower with {bells} bells."),
            ("The monks sold {product} at markets across the district.",
             "To support themselves the monks made {product}."),
            ("The illuminated book known as the {manuscript} was made in its scriptorium.",
             "Its scriptorium produced the {manuscript}, now kept in a national library."),
            ("The house was dissolved in {dissolved} under its last abbot, {abbot}.",
             "Its last abbot, {abbot}, surrendered the house when it was dissolved in {dissolved}."),
        ),
        ("The neighbouring {O} was founded in {x_founded}.",
         "At the nearby {O}, only {x_monks} monks remained.",
         "The church of {O} nearby was built of {x_stone}."),
    ),
)
# fmt: on


def _title_root(seed: int, i: int) -> str:
    """A root unique to article i among the first _ROOTS: a seeded affine permutation of i, decoded
    into syllables. Beyond _ROOTS a counter suffix keeps titles unique."""
    rng = random.Random(f"{seed}:roots")
    step = rng.randrange(1, _ROOTS)
    while gcd(step, _ROOTS) != 1:
        step = rng.randrange(1, _ROOTS)
    code = (step * i + rng.randrange(_ROOTS)) % _ROOTS
    parts = []
    for table in (_S, _C2, _V, _C1):
        code, digit = divmod(code, len(table))
        parts.append(table[digit])
    return "".join(reversed(parts))


def check_article(article: dict) -> None:
    """Raise ValueError unless every gold answer is unambiguous for a lexical grader: it occurs exactly
    once in the passage, is not part of the title or of its question, and no answer contains another."""
    context = f" {normalize_answer(article['context'])} "
    title, answers = article["title"].lower(), [q["answer"] for q in article["questions"]]
    if not 8 <= len(answers) <= 10:
        raise ValueError(f"{len(answers)} questions")
    normed = [normalize_answer(a) for a in answers]
    for q, a, n in zip(article["questions"], answers, normed, strict=True):
        if a not in article["context"] or context.count(f" {n} ") != 1:
            raise ValueError(f"answer {a!r} does not occur exactly once")
        if a.lower() in title or f" {n} " in f" {normalize_answer(q['question'])} ":
            raise ValueError(f"answer {a!r} is given away by the title or question")
    for j, n in enumerate(normed):
        if any(k != j and f" {n} " in f" {m} " for k, m in enumerate(normed)):
            raise ValueError(f"answer {answers[j]!r} is part of another answer")


def _draft(kind: Kind, title: str, root: str, rng: random.Random) -> dict:
    names = _Names(rng, root)
    values = {"T": title, "O": kind.other.format(Q=names.root())}
    for slot, (spec, _) in kind.slots.items():
        values[slot] = _value(names, spec)
    groups = list(kind.sentences[1:])
    rng.shuffle(groups)
    distractors = rng.sample(kind.distractors, rng.randint(1, min(3, 8 - len(groups))))
    body = [rng.choice(g) for g in groups]
    for d in distractors:
        body.insert(rng.randint(0, len(body)), d)
    sentences = [rng.choice(kind.sentences[0]), *body]
    used = [s for s in kind.slots if any(f"{{{s}}}" in t for t in sentences)]
    for s in sentences:
        for x in kind.slots:
            if f"{{x_{x}}}" in s:
                values[f"x_{x}"] = _value(names, kind.slots[x][0])
    asides = rng.sample(ASIDES, rng.randint(2, 4))
    for k, aside in zip(rng.sample(range(len(sentences)), len(asides)), asides, strict=True):
        sentences[k] = f"{sentences[k][:-1]}, {aside}."
    text = " ".join(_cap(s.format(**values)) for s in sentences)
    asked = rng.sample(used, min(len(used), rng.randint(8, 10)))
    questions = [
        {"question": rng.choice(kind.slots[s][1]).format(T=title), "answer": values[s]} for s in asked
    ]
    return {"title": title, "kind": kind.name, "context": text, "questions": questions}


def generate_article(seed: int, i: int) -> dict:
    """Article i of `seed`: a function of (seed, i) only. A draft that fails `check_article` (a chance
    name clash) is redrawn from the same stream, so the result stays deterministic."""
    rng = random.Random(f"{seed}:{i}")
    kind = rng.choice(KINDS)
    root = _title_root(seed, i)
    title = rng.choice(kind.titles).format(R=root, F=_first_name(rng)) + (
        "" if i < _ROOTS else f" {i // _ROOTS + 1}"
    )
    for _ in range(50):
        article = _draft(kind, title, root, rng)
        try:
            check_article(article)
        except ValueError:
            continue
        return article
    raise RuntimeError(f"generator: seed {seed} article {i} ({kind.name}) failed its checks 50 times")


def generate_articles(n: int, seed: int, start: int = 0) -> list[dict]:
    """Articles [start, start + n) of `seed` in the paper's list format (plus a `kind` key)."""
    if n < 0 or start < 0:
        raise ValueError(f"generate_articles needs n >= 0 and start >= 0, got n={n} start={start}")
    return [generate_article(seed, i) for i in range(start, start + n)]
