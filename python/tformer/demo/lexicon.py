"""The demo's French–English vocabulary: everyday nouns with their gender and both plurals,
adjectives with their four French forms, verbs, names. Every noun's English gloss appears in
its entry of the FreeDict French–English dictionary (Debian's dict-freedict-fra-eng, GPL-2+);
tests/test_demo_corpus.py checks that where the dictionary is installed. Genders are ours:
FreeDict's are wrong for some words (cahier, manteau, bague, pierre). The demo itself
needs only PyPI packages (num2words for the numbers)."""

# (French singular, French plural, gender "m"/"f", English singular, English plural)
NOUNS = [
    ("pomme", "pommes", "f", "apple", "apples"),
    ("orange", "oranges", "f", "orange", "oranges"),
    ("poire", "poires", "f", "pear", "pears"),
    ("citron", "citrons", "m", "lemon", "lemons"),
    ("banane", "bananes", "f", "banana", "bananas"),
    ("tomate", "tomates", "f", "tomato", "tomatoes"),
    ("carotte", "carottes", "f", "carrot", "carrots"),
    ("oignon", "oignons", "m", "onion", "onions"),
    ("canard", "canards", "m", "duck", "ducks"),
    ("gâteau", "gâteaux", "m", "cake", "cakes"),
    ("bouteille", "bouteilles", "f", "bottle", "bottles"),
    ("tasse", "tasses", "f", "cup", "cups"),
    ("assiette", "assiettes", "f", "plate", "plates"),
    ("couteau", "couteaux", "m", "knife", "knives"),
    ("cuillère", "cuillères", "f", "spoon", "spoons"),
    ("verre", "verres", "m", "glass", "glasses"),
    ("chaise", "chaises", "f", "chair", "chairs"),
    ("table", "tables", "f", "table", "tables"),
    ("lampe", "lampes", "f", "lamp", "lamps"),
    ("lit", "lits", "m", "bed", "beds"),
    ("fenêtre", "fenêtres", "f", "window", "windows"),
    ("porte", "portes", "f", "door", "doors"),
    ("clé", "clés", "f", "key", "keys"),
    ("livre", "livres", "m", "book", "books"),
    ("journal", "journaux", "m", "newspaper", "newspapers"),
    ("lettre", "lettres", "f", "letter", "letters"),
    ("carte", "cartes", "f", "map", "maps"),
    ("crayon", "crayons", "m", "pencil", "pencils"),
    ("stylo", "stylos", "m", "pen", "pens"),
    ("cahier", "cahiers", "m", "notebook", "notebooks"),
    ("sac", "sacs", "m", "bag", "bags"),
    ("boîte", "boîtes", "f", "box", "boxes"),
    ("chapeau", "chapeaux", "m", "hat", "hats"),
    ("chemise", "chemises", "f", "shirt", "shirts"),
    ("robe", "robes", "f", "dress", "dresses"),
    ("chaussure", "chaussures", "f", "shoe", "shoes"),
    ("manteau", "manteaux", "m", "coat", "coats"),
    ("montre", "montres", "f", "watch", "watches"),
    ("bague", "bagues", "f", "ring", "rings"),
    ("vélo", "vélos", "m", "bicycle", "bicycles"),
    ("voiture", "voitures", "f", "car", "cars"),
    ("camion", "camions", "m", "truck", "trucks"),
    ("bateau", "bateaux", "m", "boat", "boats"),
    ("avion", "avions", "m", "plane", "planes"),
    ("billet", "billets", "m", "ticket", "tickets"),
    ("chien", "chiens", "m", "dog", "dogs"),
    ("chat", "chats", "m", "cat", "cats"),
    ("cheval", "chevaux", "m", "horse", "horses"),
    ("vache", "vaches", "f", "cow", "cows"),
    ("mouton", "moutons", "m", "sheep", "sheep"),
    ("lapin", "lapins", "m", "rabbit", "rabbits"),
    ("oiseau", "oiseaux", "m", "bird", "birds"),
    ("poisson", "poissons", "m", "fish", "fish"),
    ("souris", "souris", "f", "mouse", "mice"),
    ("arbre", "arbres", "m", "tree", "trees"),
    ("fleur", "fleurs", "f", "flower", "flowers"),
    ("rose", "roses", "f", "rose", "roses"),
    ("maison", "maisons", "f", "house", "houses"),
    ("chambre", "chambres", "f", "room", "rooms"),
    ("jardin", "jardins", "m", "garden", "gardens"),
    ("église", "églises", "f", "church", "churches"),
    ("pont", "ponts", "m", "bridge", "bridges"),
    ("rue", "rues", "f", "street", "streets"),
    ("ville", "villes", "f", "town", "towns"),
    ("étoile", "étoiles", "f", "star", "stars"),
    ("pierre", "pierres", "f", "stone", "stones"),
    ("enfant", "enfants", "m", "child", "children"),
    ("femme", "femmes", "f", "woman", "women"),
    ("homme", "hommes", "m", "man", "men"),
    ("ami", "amis", "m", "friend", "friends"),
    ("médecin", "médecins", "m", "doctor", "doctors"),
    ("étudiant", "étudiants", "m", "student", "students"),
    ("soldat", "soldats", "m", "soldier", "soldiers"),
    ("photo", "photos", "f", "photograph", "photographs"),
    ("image", "images", "f", "picture", "pictures"),
    ("chanson", "chansons", "f", "song", "songs"),
    ("jouet", "jouets", "m", "toy", "toys"),
    ("balle", "balles", "f", "ball", "balls"),
    ("fourchette", "fourchettes", "f", "fork", "forks"),
    ("bougie", "bougies", "f", "candle", "candles"),
]

# Nouns that are people or buildings: they are seen, found or counted, not bought.
PEOPLE = {"enfant", "femme", "homme", "ami", "médecin", "étudiant", "soldat"}
BUILDINGS = {"maison", "chambre", "jardin", "église", "pont", "rue", "ville", "étoile"}

# (masculine singular, feminine singular, masculine plural, feminine plural, English)
ADJECTIVES = [
    ("rouge", "rouge", "rouges", "rouges", "red"),
    ("bleu", "bleue", "bleus", "bleues", "blue"),
    ("vert", "verte", "verts", "vertes", "green"),
    ("noir", "noire", "noirs", "noires", "black"),
    ("blanc", "blanche", "blancs", "blanches", "white"),
    ("jaune", "jaune", "jaunes", "jaunes", "yellow"),
    ("gris", "grise", "gris", "grises", "grey"),
    ("petit", "petite", "petits", "petites", "small"),
    ("grand", "grande", "grands", "grandes", "big"),
    ("nouveau", "nouvelle", "nouveaux", "nouvelles", "new"),
    ("vieux", "vieille", "vieux", "vieilles", "old"),
    ("lourd", "lourde", "lourds", "lourdes", "heavy"),
    ("léger", "légère", "légers", "légères", "light"),
    ("cher", "chère", "chers", "chères", "expensive"),
    ("beau", "belle", "beaux", "belles", "beautiful"),
    ("propre", "propre", "propres", "propres", "clean"),
    ("sale", "sale", "sales", "sales", "dirty"),
    ("joli", "jolie", "jolis", "jolies", "pretty"),
]
# Adjectives that go before the noun in French (the others follow it).
PRENOMINAL = {"petit", "grand", "nouveau", "vieux", "beau", "joli"}

# (French past participle, English simple past): passé composé with avoir.
VERBS = [
    ("acheté", "bought"), ("vendu", "sold"), ("vu", "saw"), ("trouvé", "found"), ("perdu", "lost"),
    ("commandé", "ordered"), ("reçu", "received"), ("compté", "counted"), ("choisi", "chose"),
    ("cherché", "looked for"), ("apporté", "brought"), ("lavé", "washed"),
]

VERBS_FOR_ALL = {"vu", "trouvé", "compté", "cherché"}

# (French subject with the form of avoir, English subject)
SUBJECTS = [
    ("j'ai", "I"), ("tu as", "you"), ("il a", "he"), ("elle a", "she"), ("nous avons", "we"),
    ("vous avez", "you"), ("ils ont", "they"), ("elles ont", "they"),
]

# (name, gender)
NAMES = [
    ("Marie", "f"), ("Pierre", "m"), ("Sophie", "f"), ("Paul", "m"), ("Julie", "f"), ("Louis", "m"),
    ("Claire", "f"), ("Thomas", "m"), ("Alice", "f"), ("Hugo", "m"), ("Emma", "f"), ("Lucas", "m"),
    ("Camille", "f"), ("Antoine", "m"), ("Léa", "f"), ("Nicolas", "m"),
]

# (French noun, gender, English): events with a date
EVENTS = [
    ("réunion", "f", "meeting"), ("concert", "m", "concert"), ("départ", "m", "departure"),
    ("fête", "f", "party"), ("voyage", "m", "trip"), ("cours", "m", "class"), ("examen", "m", "examination"),
    ("visite", "f", "visit"), ("repas", "m", "meal"), ("cérémonie", "f", "ceremony"),
    ("exposition", "f", "exhibition"), ("séance", "f", "session"),
]

# (French noun with article "dans ...", English "in the ...")
PLACES = [
    ("la boîte", "the box"), ("le sac", "the bag"), ("le panier", "the basket"), ("la cuisine", "the kitchen"),
    ("le jardin", "the garden"), ("la maison", "the house"), ("le magasin", "the shop"),
    ("la voiture", "the car"), ("le salon", "the living room"), ("la cave", "the cellar"),
    ("le grenier", "the attic"), ("la chambre", "the bedroom"),
]

# (French vehicle with article, English), verbs (French, English)
VEHICLES = [("le train", "the train"), ("le bus", "the bus"), ("l'avion", "the plane"), ("le bateau", "the boat"),
            ("le car", "the coach"), ("le métro", "the underground train")]
DEPARTURES = [("part", "leaves"), ("arrive", "arrives")]

MONTHS = [("janvier", "January"), ("février", "February"), ("mars", "March"), ("avril", "April"),
          ("mai", "May"), ("juin", "June"), ("juillet", "July"), ("août", "August"),
          ("septembre", "September"), ("octobre", "October"), ("novembre", "November"),
          ("décembre", "December")]
MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
WEEKDAYS = [("lundi", "Monday"), ("mardi", "Tuesday"), ("mercredi", "Wednesday"), ("jeudi", "Thursday"),
            ("vendredi", "Friday"), ("samedi", "Saturday"), ("dimanche", "Sunday")]

FREEDICT = "/usr/share/dictd/freedict-fra-eng"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 64 + _B64.index(ch)
    return value


def read_freedict(prefix: str = FREEDICT) -> dict:
    """FreeDict's dictd files (`prefix`.index + `prefix`.dict.dz, a gzip-compatible dictzip):
    headword -> list of entry texts (pronunciation, <part of speech, gender>, glosses)."""
    import gzip
    import os

    index, data = prefix + ".index", prefix + ".dict.dz"
    if not (os.path.exists(index) and os.path.exists(data)):
        raise FileNotFoundError(f"{index} not found: the FreeDict French-English dictionary is a Debian package "
                                "(apt-get install dict-freedict-fra-eng)")
    with gzip.open(data, "rb") as f:
        body = f.read()
    entries: dict[str, list[str]] = {}
    with open(index, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00"):
                continue
            start, length = _dictd_number(parts[1]), _dictd_number(parts[2])
            entries.setdefault(parts[0], []).append(body[start:start + length].decode("utf-8"))
    return entries
