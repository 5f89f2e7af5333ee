"""The vocabulary of the synthetic corpus's sentences, and the English morphology they need.

Common English nouns, verbs, adjectives, names, places and times, written for spidrkit and chosen to cover
every English phone (rare ones such as /zh/ "measure" and /oy/ "voice" included); the grammar that draws
sentences from them is :mod:`spidrkit.data.synth.sentences`. Licence: CC0 1.0 (public domain dedication).
"""

from __future__ import annotations

# --- vocabulary --------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


PEOPLE = _words("""
man woman boy girl child baby teacher doctor farmer driver pilot sailor soldier student artist
painter singer dancer writer reader player worker builder baker cook nurse judge king queen prince
princess lawyer neighbour stranger visitor guest friend brother sister mother father uncle aunt
cousin son daughter husband wife captain officer guard miner fisherman hunter shepherd merchant
clerk manager engineer scientist professor musician poet actor athlete runner swimmer climber
traveller tourist passenger customer owner tenant waiter gardener carpenter plumber mechanic
""")

ANIMALS = _words("""
dog cat horse cow sheep goat pig rabbit mouse rat fox wolf bear deer lion tiger monkey elephant
camel zebra giraffe snake frog turtle duck goose chicken owl eagle crow sparrow pigeon parrot
swan bee ant spider butterfly fish shark whale dolphin squirrel donkey kitten puppy lamb calf
""")

THINGS = _words("""
book pen pencil letter paper card map bag box basket bottle cup glass plate bowl spoon fork knife
table chair bed desk lamp clock mirror window door key lock coin ring watch hat coat shirt shoe
boot sock glove scarf jacket dress belt button needle thread rope chain ladder hammer nail saw
brush broom bucket barrel wheel engine bicycle car truck bus train boat ship plane wagon cart
radio phone camera computer screen television guitar piano drum violin trumpet ball kite toy
doll puzzle game picture painting photo poster flag candle match stove oven kettle pot pan jar
blanket pillow towel soap sponge umbrella wallet purse ticket stamp envelope parcel package
apple orange banana lemon grape cherry peach pear plum melon potato tomato carrot onion cabbage
bean pea corn rice bread cake pie cookie cheese butter egg milk honey sugar salt pepper soup
sandwich pizza tea coffee juice water stone rock shell feather leaf branch flower seed tree bush
treasure measure vision decision pleasure garage collision voice noise oil point
""")

PLACES = _words("""
kitchen garden house school church market station library museum hospital office factory farm
village city town forest river lake ocean beach island mountain valley hill desert field park
bridge road street corner shop bakery restaurant hotel theatre stadium harbour airport castle
palace tower cave barn yard attic cellar basement hallway bedroom bathroom classroom playground
""")

ABSTRACT = _words("""
story song idea plan question answer problem secret message lesson rule reason choice chance
mistake promise dream memory habit joke rumour truth lie name number word sentence language
""")

# irregular plurals (everything else takes the regular spelling rules)
_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "mouse": "mice", "sheep": "sheep",
    "deer": "deer", "fish": "fish", "goose": "geese", "wife": "wives", "knife": "knives",
    "leaf": "leaves", "shelf": "shelves", "calf": "calves", "wolf": "wolves", "fisherman": "fishermen",
    "tooth": "teeth", "foot": "feet", "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes",
    "scarf": "scarves",
}

ADJECTIVES = _words("""
big small little large tiny huge tall short long wide narrow thick thin heavy light old new young
ancient modern early late quick slow fast quiet loud soft hard smooth rough sharp dull bright dark
clean dirty dry wet warm cold hot cool fresh stale sweet sour bitter salty rich poor cheap strange
famous common rare simple plain fancy pretty ugly lovely handsome brave shy proud calm angry happy
sad lonely lucky clever foolish honest gentle kind cruel polite rude busy lazy eager careful
careless curious hungry thirsty tired sleepy sick healthy strong weak empty full broken red blue
green yellow orange purple pink brown black white grey golden silver wooden woollen plastic
round square flat deep shallow noisy peaceful useful useless usual unusual unique precious
ordinary beautiful wonderful terrible delicious dangerous comfortable expensive enormous
""")

# transitive verbs: base, past (third person singular is spelled by rule)
TRANSITIVE = [tuple(p.split("/")) for p in _words("""
see/saw find/found take/took bring/brought carry/carried hold/held keep/kept leave/left lose/lost
buy/bought sell/sold give/gave send/sent make/made build/built break/broke fix/fixed open/opened
close/closed wash/washed clean/cleaned paint/painted draw/drew write/wrote read/read cook/cooked
eat/ate drink/drank catch/caught throw/threw kick/kicked push/pushed pull/pulled lift/lifted
drop/dropped move/moved hide/hid show/showed watch/watched hear/heard touch/touched smell/smelled
taste/tasted count/counted measure/measured weigh/weighed fill/filled empty/emptied cut/cut
fold/folded wrap/wrapped tie/tied pack/packed borrow/borrowed return/returned lend/lent
steal/stole choose/chose need/needed want/wanted like/liked love/loved hate/hated enjoy/enjoyed
remember/remembered forget/forgot notice/noticed follow/followed chase/chased feed/fed
visit/visited call/called meet/met help/helped thank/thanked answer/answered ask/asked teach/taught
describe/described explain/explained check/checked test/tested study/studied plant/planted
pick/picked water/watered boil/boiled fry/fried bake/baked slice/sliced mix/mixed stir/stirred
pour/poured drive/drove ride/rode sail/sailed fly/flew park/parked load/loaded deliver/delivered
order/ordered pay/paid earn/earned spend/spent save/saved share/shared split/split join/joined
shake/shook turn/turned ring/rang play/played sing/sang hum/hummed whistle/whistled
""")]

INTRANSITIVE = [tuple(p.split("/")) for p in _words("""
run/ran walk/walked swim/swam jump/jumped climb/climbed dance/danced sing/sang laugh/laughed
cry/cried smile/smiled sleep/slept wake/woke sit/sat stand/stood wait/waited rest/rested
work/worked play/played hurry/hurried wander/wandered travel/travelled arrive/arrived
leave/left fall/fell rise/rose shout/shouted whisper/whispered listen/listened talk/talked
argue/argued cough/coughed sneeze/sneezed shiver/shivered yawn/yawned stay/stayed hide/hid
think/thought pray/prayed vote/voted paint/painted cook/cooked read/read write/wrote
""")]

NAMES = _words("""
anna ben carla david emma frank grace henry isabel jack kate leo maria nathan olivia peter
rachel sam tina victor wendy adam bella charles diana edward fiona george helen ivan julia
kevin laura martin nina oscar paula robert sarah thomas ursula vincent william yvonne zoe
alice arthur betty brian clara daniel ellen felix hannah james joseph lucy mark mary michael
nancy paul rose simon susan walter
""")

ADVERBS = _words("""
quickly slowly quietly loudly softly gently carefully carelessly happily sadly angrily calmly
eagerly proudly politely rudely bravely nervously patiently suddenly finally easily badly
""")

TIMES = [
    "yesterday", "today", "tomorrow", "last night", "last week", "last year", "this morning",
    "this evening", "in the morning", "in the afternoon", "at night", "at noon", "at midnight",
    "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "on Saturday", "on Sunday",
    "in January", "in March", "in June", "in August", "in October", "in December",
    "in the spring", "in the summer", "in the autumn", "in the winter", "after dinner",
    "before breakfast", "after lunch", "during the storm", "before the party", "after school",
    "a long time ago", "two days ago", "every weekend", "early in the morning", "late at night",
]
DAYS = ["day", "morning", "evening", "night", "week", "month", "year", "summer", "winter", "Sunday"]
NUMBERS = _words("two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty")
PREPOSITIONS = _words("in near behind under beside inside outside above below across")
CONNECTIVES = ["and", "but", "so", "because", "while", "although", "when", "until", "after", "before"]
SUBJECT_PRONOUNS = ["i", "you", "he", "she", "we", "they"]
POSSESSIVES = ["my", "your", "his", "her", "our", "their"]
MODALS = ["will", "can", "could", "should", "must", "might", "would"]

_A_BEFORE = ("use", "uni", "usu", "euro", "one")  # vowel letter, consonant sound: "a useful"
_AN_BEFORE = ("hour", "honest", "honour")  # consonant letter, vowel sound: "an hour"


# --- morphology ----------------------------------------------------------------------------------------


def plural(noun: str) -> str:
    if noun in _PLURALS:
        return _PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    if verb == "have":
        return "has"
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def article(next_word: str) -> str:
    w = next_word.lower()
    if w.startswith(_AN_BEFORE):
        return "an"
    if w.startswith(_A_BEFORE):
        return "a"
    return "an" if w[0] in "aeiou" else "a"
