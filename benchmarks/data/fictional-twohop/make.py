"""Writes corpus.jsonl and questions.jsonl of fictional-twohop (see SOURCE.md) and checks them: python3 make.py"""
# ruff: noqa: E501
import json

# (A doc, B doc, question, answer): the question names A's subject; A leads to B's subject; only B holds the answer.
DISTRACT = ["Ermina Tolvane's apprentice, Dorran Pike, was born in the hill town of Vellmoor.", "Caddoc Wrenfield's brother, Mabon Wrenfield, worked as a tanner all his life.", "Odile Marchbank's sister, Clemence Marchbank, married the printer Ivo Saltash.", 'The River Callow rises in the same hills as the River Ostelle and flows into Lake Corramere.', "The Dunmere Rowing Club's rival, the Kettle Reach Club, was founded by Amos Threlkeld.", "The Tessivane Opera House's sister house, the Verity Theatre, stands in the city of Drummond Vale.", "Corran Ashby's rival, the portraitist Edwin Merrivale, was born in 1758.", "Galen Stroud's partner, Owen Maddrel, died in the port of Cullenport.", "Maud Ellery's son, Rufus Ellery, became a surveyor.", "Silas Thornquist's first mate, Jory Penwarden, was born on the island of Tolsey.", "The Halverston Academy's sister society, the Orrery Club, is based in the town of Aldwick Cross.", "Bram Kettering's climbing partner, Lem Ashdown, was a blacksmith.", 'The neighbouring village of Harby, across the ridge from Oskerby, has Saint Columbe as its patron saint.', "Rosamund Carrow's secretary, Ada Strallick, spoke three languages.", "Edda Morvain's teacher, Joss Hallam, kept his studio in the town of Stennet.", "Gannet Park's neighbour, the Mill Lane ground, opened in 1931.", "Percival Danecroft's cousin, Letty Danecroft, was a well-known harpist.", "Jonas Pellow's business partner, Elias Borrow, traded in saffron.", "Hester Quayle's brother, the essayist Crispin Quayle, was born in 1829.", "Saint Olwen's companion, Saint Ebrennus, is remembered as the patron saint of millers.", "Lastmoor's neighbour, the town of Pellish, holds a wool fair every year in October.", "Oriel Fastwind's master, Anton Rasp, worked in the city of Goldwater.", "Copper Wren's stablemate, Lantern Moth, was owned by Horace Dunnage.", 'A related mineral, dunmorite, is deep red and is found in the same hills as ostrelite.']
P = [
 (("Harlow Compass", "The Harlow Compass is a brass surveying compass designed by Ermina Tolvane in 1852. It was the first compass to carry a folding sight, and forty of them were made for the river survey of the Lenmoor plains."),
  ("Ermina Tolvane", "Ermina Tolvane was an instrument maker born in the river town of Quessary. She ran a workshop of nine apprentices and kept a diary of every instrument she sold."),
  "In which town was the designer of the Harlow Compass born?", "Quessary"),
 (("Brindlemoor Abbey", "Brindlemoor Abbey is a ruined abbey on the edge of the Tarnley moors. It was founded by Abbot Caddoc Wrenfield, and its cloister was rebuilt after a storm in 1422."),
  ("Caddoc Wrenfield", "Caddoc Wrenfield worked as a beekeeper before he took holy orders. He wrote a short book on the care of hives, and he is buried beneath a yew tree."),
  "What was the occupation of the founder of Brindlemoor Abbey before he took holy orders?", "beekeeper"),
 (("The Salt Lantern", "The Salt Lantern is a novel written by Odile Marchbank. It follows a lighthouse keeper's daughter through a winter of shipwrecks and was first printed in three volumes."),
  ("Odile Marchbank", "Odile Marchbank was a novelist whose husband was the clockmaker Tobiah Fennick. The couple lived above his shop and raised four children."),
  "Who was the husband of the author of The Salt Lantern?", "Tobiah Fennick"),
 (("Varrow Bridge", "Varrow Bridge is a seven-arched stone bridge that spans the River Ostelle. It was finished in 1688 and carried the only road between the two halves of the county."),
  ("River Ostelle", "The River Ostelle rises in the Harrowden hills and flows into Lake Maunder after a course of sixty miles. Otters returned to its banks in the last century."),
  "Into which lake does the river spanned by Varrow Bridge flow?", "Lake Maunder"),
 (("Quillon Cup", "The Quillon Cup is a rowing race held each summer on a straight mile of water. It was first won by the Dunmere Rowing Club, whose crew finished two lengths clear."),
  ("Dunmere Rowing Club", "The Dunmere Rowing Club was founded in 1871 by Hollis Pryne, a retired ferryman. Its boathouse is painted white with green doors."),
  "Who founded the club that first won the Quillon Cup?", "Hollis Pryne"),
 (("The Glass Orchard", "The Glass Orchard is an opera in three acts. It premiered at the Tessivane Opera House, where the first night ran for more than four hours."),
  ("Tessivane Opera House", "The Tessivane Opera House stands in the city of Ombergate. It seats eleven hundred people and has a ceiling painted with constellations."),
  "In which city did The Glass Orchard premiere?", "Ombergate"),
 (("Isolde Vantreece", "Isolde Vantreece was a painter of harbour scenes who studied under Corran Ashby. Her largest canvas shows the herring fleet leaving port at dawn."),
  ("Corran Ashby", "Corran Ashby was a landscape painter born in 1761. He took few pupils and taught them to paint only in the open air."),
  "In which year was the teacher of Isolde Vantreece born?", "1761"),
 (("Pellinore Lighthouse", "Pellinore Lighthouse stands on a granite reef and was built by the engineer Galen Stroud. Its lamp was first lit in 1809."),
  ("Galen Stroud", "Galen Stroud was an engineer who designed harbour walls and beacons. He died in the town of Eskwith at the age of eighty."),
  "In which town did the engineer who built Pellinore Lighthouse die?", "Eskwith"),
 (("Fernwick Biscuits", "Fernwick Biscuits is a bakery company founded by Maud Ellery. Its oat biscuits are still baked in the original brick ovens."),
  ("Maud Ellery", "Maud Ellery was a baker and businesswoman. Her daughter, Petra Ellery, became a botanist and named a fern after her mother."),
  "What profession did the daughter of the founder of Fernwick Biscuits take up?", "botanist"),
 (("Merrow Queen", "The Merrow Queen was a three-masted merchant ship captained by Silas Thornquist. She carried wool and tea for twenty years before she was broken up."),
  ("Silas Thornquist", "Silas Thornquist was a sea captain born on the island of Skelmara. He first went to sea at the age of twelve as a cabin boy."),
  "On which island was the captain of the Merrow Queen born?", "Skelmara"),
 (("Corvel Prize", "The Corvel Prize is an award for young mathematicians. It is awarded every two years by the Halverston Academy, together with a silver medal."),
  ("Halverston Academy", "The Halverston Academy is a learned society based in the town of Pennock Reach. It meets in a hall that was once a grain exchange."),
  "In which town is the academy that awards the Corvel Prize based?", "Pennock Reach"),
 (("Mount Ysolde", "Mount Ysolde is a snow-capped peak in the Grevanne range. It was first climbed by Bram Kettering in 1903, by its northern ridge."),
  ("Bram Kettering", "Bram Kettering was a schoolteacher who spent his summers climbing. He kept a record of every route he took in small notebooks."),
  "What was the occupation of the first person to climb Mount Ysolde?", "schoolteacher"),
 (("Saltbraid", "Saltbraid is a plaited bread topped with coarse salt. It originated in the village of Oskerby, where it is baked for weddings."),
  ("Oskerby", "Oskerby is a village on a chalk ridge. Its patron saint is Saint Wendrel, and its church has a leaning tower."),
  "Who is the patron saint of the village where saltbraid originated?", "Saint Wendrel"),
 (("Treaty of Hollins Ford", "The Treaty of Hollins Ford ended a long quarrel over fishing rights. It was negotiated by the diplomat Rosamund Carrow and signed on a river barge."),
  ("Rosamund Carrow", "Rosamund Carrow was a diplomat who spoke seven languages. She served as an envoy for thirty years and never married."),
  "How many languages did the diplomat who negotiated the Treaty of Hollins Ford speak?", "seven"),
 (("The Tin Heron", "The Tin Heron is a sculpture by Edda Morvain that stands beside a canal lock. It is twelve feet tall and was made from old roofing sheets."),
  ("Edda Morvain", "Edda Morvain was a sculptor whose studio was in the town of Wyndle Cross. She worked mostly at night by the light of oil lamps."),
  "In which town was the studio of the sculptor of The Tin Heron?", "Wyndle Cross"),
 (("Tarrow Athletic", "Tarrow Athletic is a football club that plays its home games at Gannet Park. The club's colours are amber and black."),
  ("Gannet Park", "Gannet Park is a football stadium that opened in 1923. It holds eight thousand spectators and has a covered stand on one side."),
  "In which year did the home stadium of Tarrow Athletic open?", "1923"),
 (("Orvel Railway", "The Orvel Railway is a narrow-gauge line through slate country. Its chief engineer was Percival Danecroft, who planned its nine tunnels."),
  ("Percival Danecroft", "Percival Danecroft was a railway engineer. His brother, Ambrose Danecroft, was a famous organist at the cathedral of Lurn."),
  "What instrument did the brother of the Orvel Railway's chief engineer play?", "organ"),
 (("Kesterfield Library", "The Kesterfield Library is a public library with a domed reading room. It was funded by the merchant Jonas Pellow and opened in 1867."),
  ("Jonas Pellow", "Jonas Pellow was a merchant who made his fortune trading in cinnamon. He owned a fleet of six ships and a warehouse by the docks."),
  "In what goods did the merchant who funded the Kesterfield Library trade?", "cinnamon"),
 (("Winter at Caddon Mere", "Winter at Caddon Mere is a long poem written by Hester Quayle. It describes a frozen lake and the skaters who cross it at night."),
  ("Hester Quayle", "Hester Quayle was a poet born in 1834. She published four books of verse and taught at a school for girls."),
  "In which year was the author of Winter at Caddon Mere born?", "1834"),
 (("Brennock Festival", "The Brennock Festival is held each spring in honour of Saint Olwen. Boats are decorated with ribbons and rowed around the harbour."),
  ("Saint Olwen", "Saint Olwen is remembered as the patron saint of ferrymen. Legend says she calmed a storm with a single word."),
  "Of which group is the saint honoured by the Brennock Festival the patron saint?", "ferrymen"),
 (("Corriveen", "Corriveen is a small island of sheep farms and stone walls. It is governed from the town of Lastmoor on the mainland."),
  ("Lastmoor", "Lastmoor is a harbour town known for its oyster market, which is held every year in May. Its harbour wall is a mile long."),
  "In which month is the oyster market held in the town that governs Corriveen?", "May"),
 (("Anselm Grevy", "Anselm Grevy is a violinist who plays a violin made by the luthier Oriel Fastwind. He has recorded all of the old dance suites."),
  ("Oriel Fastwind", "Oriel Fastwind was a luthier who worked in the city of Bellacourt. He made fewer than a hundred instruments in his life."),
  "In which city did the maker of Anselm Grevy's violin work?", "Bellacourt"),
 (("Thimble Stakes", "The Thimble Stakes is a horse race run over two miles of turf. In 1899 it was won by the horse Copper Wren, ridden by a stable boy."),
  ("Copper Wren", "Copper Wren was a chestnut racehorse owned by Agatha Morrow-Finch. He won eleven races before he was retired to stud."),
  "Who owned the horse that won the Thimble Stakes in 1899?", "Agatha Morrow-Finch"),
 (("Wilmer Oakhaven", "Wilmer Oakhaven was a geologist who discovered the mineral ostrelite. He spent most of his working life mapping caves."),
  ("Ostrelite", "Ostrelite is a pale green mineral found in the hills of Carnock. It is soft enough to be scratched with a fingernail."),
  "What colour is the mineral discovered by Wilmer Oakhaven?", "pale green"),
]
with open("corpus.jsonl", "w") as c, open("questions.jsonl", "w") as q:
    for i, ((ta, xa), (tb, xb), question, answer) in enumerate(P, 1):
        a, b = f"th-{i:02d}a", f"th-{i:02d}b"
        # a second entity of the same kind in document b: b alone no longer says which one the question means;
        # the distractor comes first in even-numbered pairs, second in odd ones
        first, rest = xb.split(". ", 1)
        d = DISTRACT[i - 1]
        xb = f"{d} {xb}" if i % 2 == 0 else f"{first}. {d} {rest}"
        assert answer.lower() not in d.lower(), (i, d)
        c.write(json.dumps({"id": a, "title": ta, "text": xa}) + "\n")
        c.write(json.dumps({"id": b, "title": tb, "text": xb}) + "\n")
        q.write(json.dumps({"id": f"th-q{i:02d}", "question": question, "golden_answers": [answer],
                            "gold_doc_ids": [a, b], "type": "compositional"}) + "\n")
        assert answer.lower() not in (ta + xa).lower(), (i, answer)
        assert answer.lower() in xb.lower(), (i, answer)
        assert tb.split()[-1].lower() in xa.lower(), (i, tb)
print(len(P))
