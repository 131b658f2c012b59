"""Write the quickstart's preference data: small, written by this project, in hh-rlhf text form.

    python data/make_quickstart_data.py    # rewrites data/quickstart/*.jsonl, byte-identical every time

Standard library only, no downloads; nothing is copied from hh-rlhf or any other dataset.

Each row of train.jsonl / test.jsonl is {"chosen": ..., "rejected": ...}, two dialogues in hh-rlhf text
form ("\\n\\nHuman: <question>\\n\\nAssistant: <reply>"). A quarter of them are multi-turn: an earlier,
polite exchange on the same topic comes first. Chosen and rejected share the whole conversation and
differ only in the final assistant reply.

The preference rule: the chosen reply is helpful, friendly and concise -- it answers the user's actual
question with concrete advice (one tip or two) in one to three short sentences and ends cleanly. The
rejected reply fails in one of five ways, drawn evenly (exactly a fifth of each split):
    dismissal  a curt, unhelpful or rude brush-off ("Figure it out yourself.")
    refusal    an unnecessary refusal ("I'm sorry, but I can't help with that.")
    ramble     off-topic: trivia and small talk that ignore the question, or (half the time) confident
               advice on an unrelated subject -- a real answer to some other question
    loop       a reply that repeats itself or loops on a phrase
    vague      a vague non-answer ("It depends. There are many factors.")
Rejected replies range from a few words to long rambles, so "the shorter (or longer) reply wins" is
no shortcut (the baselines are printed at the end and recorded in quickstart/README.md).

Files: train.jsonl (1,600 pairs), test.jsonl (400 pairs; its conversations -- the shared prompts -- do
not occur in train.jsonl at all), prompts.jsonl (64 {"prompt": ...} single-turn questions on topics
that are in neither file, for evaluating PPO).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "quickstart"
SEED = 1124
N_TRAIN, N_TEST, N_PROMPTS = 1600, 400, 64
MULTI_TURN_SHARE = 0.25
MAX_WORDS = 200

# The data tables keep a compact, hand-written layout.
# fmt: off
# (topic as a noun phrase, [(what the user wants to do, [three short, concrete, correct answers]), ...])
TOPICS: list[tuple[str, list[tuple[str, list[str]]]]] = [
    ("boiling eggs", [
        ("boil an egg so the yolk stays soft", [
            "Lower the egg into boiling water, cook it for six to seven minutes, then put it in cold water for a minute.",
            "Bring a pot of water to a gentle boil, add the egg with a spoon, and take it out after six minutes for a jammy yolk.",
            "Start with the egg at room temperature and boil it for about six minutes. Cool it under cold water right away so it stops cooking.",
        ]),
        ("peel hard-boiled eggs without tearing them", [
            "Move the eggs straight into ice water after boiling, then crack them all over and peel them under running water.",
            "Use eggs that are a week or so old, since very fresh ones stick. Start peeling from the wide end, where the air pocket is.",
            "Chill them in cold water for ten minutes, roll each one gently on the counter to crack the shell, and peel from the wide end.",
        ]),
    ]),
    ("cooking rice", [
        ("cook fluffy rice on the stove", [
            "Rinse the rice, use about one and a half cups of water per cup of rice, and simmer it covered for fifteen minutes. Let it rest ten minutes before fluffing.",
            "Rinse it until the water runs clear, bring it to a boil, then cover it and cook on low heat without lifting the lid.",
            "Toast the rinsed rice in a little oil for a minute, add water and a pinch of salt, then simmer covered until the water is absorbed.",
        ]),
        ("keep rice from sticking to the pot", [
            "Rinse off the extra starch first, keep the heat low once it simmers, and don't stir it while it cooks.",
            "Use a heavy pot with a tight lid, add a little butter or oil, and let the rice rest off the heat before serving.",
            "Measure the water carefully and turn the heat to the lowest setting after it boils. Stirring makes it gummy.",
        ]),
    ]),
    ("baking bread", [
        ("bake a simple loaf of bread", [
            "Mix flour, water, salt and yeast, let the dough rise until doubled, shape it, and bake at about 220 C for 35 minutes.",
            "Knead a basic dough for ten minutes, let it rise for an hour, then bake it until it sounds hollow when you tap the bottom.",
            "Try a no-knead recipe: stir the dough together, let it rise overnight, and bake it in a hot covered pot.",
        ]),
        ("get my bread dough to rise properly", [
            "Check that your yeast is fresh, use lukewarm water rather than hot, and let the dough rise somewhere warm.",
            "Give it more time, since dough can take two hours in a cool kitchen. It's ready when a gentle poke springs back slowly.",
            "Knead until the dough is smooth and stretchy, and cover the bowl so the surface doesn't dry out.",
        ]),
    ]),
    ("coffee", [
        ("make better coffee at home", [
            "Grind fresh beans just before brewing, and use about one gram of coffee for every sixteen grams of water.",
            "Use water just off the boil, keep your grind consistent, and weigh the coffee instead of using scoops.",
            "Buy whole beans roasted in the last few weeks, store them airtight, and clean your coffee maker regularly.",
        ]),
        ("make my coffee less bitter", [
            "Use a slightly coarser grind and a shorter brewing time, since over-extraction causes bitterness.",
            "Let boiling water cool for thirty seconds before brewing. A lighter roast is also less bitter.",
            "Clean the old coffee oils out of your machine, and don't leave brewed coffee sitting on a hot plate.",
        ]),
    ]),
    ("making soup", [
        ("make a quick vegetable soup", [
            "Soften an onion and some garlic in oil, add chopped vegetables and stock, and simmer for twenty minutes.",
            "Saute an onion, add whatever vegetables you have with broth and herbs, simmer until soft, then blend half of it.",
            "Cook diced carrots, celery and potatoes in stock with a bay leaf for twenty minutes, then season with salt and pepper.",
        ]),
        ("make my soup taste less bland", [
            "Add salt a little at a time, and finish with a squeeze of lemon juice to brighten it.",
            "Brown the onions well at the start, use a good stock, and stir in fresh herbs right before serving.",
            "A spoon of tomato paste, a dash of soy sauce or a parmesan rind adds depth. Taste and adjust at the end.",
        ]),
    ]),
    ("cooking pasta", [
        ("cook pasta so it isn't mushy", [
            "Use a big pot of well-salted boiling water, and start tasting two minutes before the time on the box.",
            "Boil it until it's just firm to the bite, drain it right away, and toss it with the sauce in the pan.",
            "Keep the water at a rolling boil, stir during the first minute so it doesn't stick, and drain it a little early.",
        ]),
        ("make a simple tomato sauce for pasta", [
            "Cook garlic in olive oil for a minute, add a can of crushed tomatoes and some salt, and simmer for fifteen minutes.",
            "Simmer canned tomatoes with butter and half an onion for forty minutes, then take out the onion. It's simple and rich.",
            "Saute onion and garlic, add tomatoes, a pinch of sugar and some basil, and loosen it with a splash of pasta water.",
        ]),
    ]),
    ("meal prep", [
        ("meal prep for the week", [
            "Pick two or three recipes, cook them on Sunday, and portion them into containers for the fridge.",
            "Cook a big batch of a grain, a protein and roasted vegetables, then combine them differently each day.",
            "Plan the menu, shop once, and chop vegetables ahead so weekday cooking takes only minutes.",
        ]),
        ("keep prepped meals fresh", [
            "Cool the food quickly, store it in airtight containers, and eat fridge portions within three to four days.",
            "Freeze the meals for later in the week, and move one to the fridge the night before.",
            "Keep sauces and dressings in separate small containers until you eat, so nothing gets soggy.",
        ]),
    ]),
    ("baking cookies", [
        ("make chewy chocolate chip cookies", [
            "Use more brown sugar than white, melt the butter, and take the cookies out while the centers still look soft.",
            "Chill the dough for an hour before baking, and bake at 180 C for about ten minutes.",
            "Add an extra egg yolk to the dough and don't overbake them. They firm up as they cool on the tray.",
        ]),
        ("stop my cookies from spreading too much", [
            "Chill the dough before baking, and make sure your butter is soft but not melted.",
            "Measure the flour by weight, use a cool baking sheet for each batch, and line it with parchment.",
            "Your oven may be running cool, so check it with an oven thermometer. Too much butter or sugar also makes them spread.",
        ]),
    ]),
    ("roasting vegetables", [
        ("roast vegetables so they get crispy", [
            "Cut them into even pieces, toss them with oil and salt, and roast at 220 C in a single layer.",
            "Dry them well, don't crowd the pan, and flip them once halfway through.",
            "Preheat the tray in the oven, spread the oiled vegetables out, and roast until the edges brown, about 25 minutes.",
        ]),
        ("season roasted vegetables", [
            "Use salt, pepper and olive oil before roasting, then add a squeeze of lemon and fresh herbs after.",
            "Try smoked paprika and garlic powder on potatoes, or cumin on carrots.",
            "Toss them with a little honey and balsamic vinegar for the last ten minutes in the oven.",
        ]),
    ]),
    ("leftovers", [
        ("store leftovers safely", [
            "Put them in the fridge within two hours of cooking, in shallow airtight containers, and eat them within three or four days.",
            "Cool the food quickly by dividing it into small containers, and label each one with the date.",
            "Keep your fridge at 4 C or colder, and freeze anything you won't eat in the next few days.",
        ]),
        ("reheat leftovers evenly", [
            "Spread the food out on the plate, cover it, and microwave it in short bursts, stirring in between.",
            "Add a splash of water to rice or pasta before reheating, and heat it until it's steaming all the way through.",
            "Reheat soups and sauces on the stove over medium heat, stirring until they bubble.",
        ]),
    ]),
    ("houseplants", [
        ("keep a houseplant alive", [
            "Water it only when the top inch of soil is dry, and give it bright, indirect light.",
            "Check the soil with a finger, water deeply when it feels dry, and keep the pot near a bright window.",
            "Use a pot with drainage holes and never let it sit in water. Most houseplants die from overwatering.",
        ]),
        ("tell if my plant needs more light", [
            "Long, thin stems stretching toward the window and pale new leaves mean it wants more light.",
            "If it stops growing and drops leaves, move it closer to a window, but out of harsh midday sun.",
            "Leaning toward the window is a clear sign. Rotate the pot every week and move it somewhere brighter.",
        ]),
    ]),
    ("growing tomatoes", [
        ("grow tomatoes on a balcony", [
            "Use a large pot with drainage, give the plant six or more hours of sun, and water at the base every morning.",
            "Pick a compact variety, a deep container and a sunny spot, and tie the stem to a stake as it grows.",
            "Plant it in good potting mix, feed it tomato fertilizer every two weeks once it flowers, and water it steadily.",
        ]),
        ("stop my tomato leaves from turning yellow", [
            "Water deeply and regularly at the soil instead of on the leaves, and pick off the yellow lower leaves.",
            "Yellowing often means the plant is hungry, so feed it a balanced fertilizer. Also make sure the pot drains well.",
            "Mulch around the base so soil doesn't splash onto the leaves, and give the plants space for air to flow.",
        ]),
    ]),
    ("composting", [
        ("start composting at home", [
            "Mix green scraps like vegetable peels with brown material like dry leaves, and turn the pile every week.",
            "Use a bin with a lid, keep it as damp as a wrung-out sponge, and leave out meat and dairy.",
            "Start a pile in a shady corner with layers of kitchen scraps and shredded cardboard. It will be ready in a few months.",
        ]),
        ("stop my compost from smelling", [
            "A bad smell means too much wet green material, so mix in dry leaves or shredded paper and turn it.",
            "Turn the pile to get air into it, and bury fresh food scraps under a layer of brown material.",
            "Keep meat, fish and dairy out of it, and make sure the bin gets some airflow.",
        ]),
    ]),
    ("lawn care", [
        ("get a greener lawn", [
            "Mow high, water deeply once or twice a week in the morning, and feed it in spring and autumn.",
            "Leave the grass clippings on the lawn as natural fertilizer, and keep your mower blade sharp.",
            "Reseed thin patches in early autumn, and aerate compacted soil so the roots can breathe.",
        ]),
        ("water my lawn properly", [
            "Water deeply about once or twice a week, early in the morning, so the roots grow down.",
            "Aim for about an inch of water a week, including rain. An empty tuna can on the lawn shows how much you've given.",
            "Avoid short daily sprinkles. Long, less frequent watering makes the grass tougher in dry spells.",
        ]),
    ]),
    ("starting seeds", [
        ("start vegetable seeds indoors", [
            "Sow them in seed-starting mix, keep it moist and warm, and give the seedlings strong light as soon as they sprout.",
            "Plant seeds about twice as deep as they are wide, cover the tray to hold moisture, and remove the cover once they sprout.",
            "Start six to eight weeks before your last frost, and keep them under a grow light for about fourteen hours a day.",
        ]),
        ("move my seedlings outside", [
            "Harden them off first: put them outside for an hour a day and increase the time over a week.",
            "Wait until the risk of frost has passed, and plant them on a cloudy day or in the evening.",
            "Water them well before and after transplanting, and shelter them from strong wind for the first few days.",
        ]),
    ]),
    ("garden pests", [
        ("get rid of aphids on my plants", [
            "Spray them off with a strong jet of water every few days, and check under the leaves.",
            "Mix a little mild liquid soap into water and spray the affected leaves, or buy an insecticidal soap.",
            "Encourage ladybugs, which eat aphids, and wipe small clusters off by hand.",
        ]),
        ("keep slugs away from my vegetables", [
            "Go out after dark with a flashlight and pick them off, and water in the morning instead of the evening.",
            "Put copper tape around pots and raised beds, and clear away boards and debris where slugs hide.",
            "Sink a shallow dish of beer into the soil as a trap, and empty it every few days.",
        ]),
    ]),
    ("packing for trips", [
        ("pack light for a week-long trip", [
            "Choose clothes in two or three colors that all match, roll them, and plan to do laundry once midway.",
            "Pack for four days, not seven, wear your bulkiest shoes on the plane, and bring travel-size toiletries.",
            "Lay out everything you want to bring, then put back a third of it. You can buy anything you forgot.",
        ]),
        ("keep my clothes from wrinkling in a suitcase", [
            "Roll soft clothes, fold stiff ones along their seams, and unpack as soon as you arrive.",
            "Put shirts in thin plastic dry-cleaning bags, or use packing cubes so nothing shifts around.",
            "Hang wrinkled clothes in the bathroom while you shower. The steam relaxes most creases.",
        ]),
    ]),
    ("jet lag", [
        ("deal with jet lag", [
            "Switch to the local schedule right away, get morning sunlight, and keep naps under twenty minutes.",
            "Shift your bedtime by an hour a day before you fly, drink water on the plane, and go outside when you arrive.",
            "Eat meals at local times and skip caffeine in the afternoon. Most people adjust by about a day per time zone.",
        ]),
        ("sleep on a long flight", [
            "Bring an eye mask, earplugs and a neck pillow, and pick a window seat so you can lean against the wall.",
            "Skip alcohol and caffeine, wear comfortable layers, and set your watch to the destination time.",
            "Try to sleep when it's night at your destination, and use noise-canceling headphones if you have them.",
        ]),
    ]),
    ("booking flights", [
        ("find cheaper flights", [
            "Compare prices on a few search sites, be flexible by a day or two, and set a price alert.",
            "Fly midweek, book one to three months ahead for domestic trips, and check nearby airports.",
            "Check the airline's own site before booking, and count bag fees when you compare budget airlines.",
        ]),
        ("avoid missing a connecting flight", [
            "Book layovers of at least an hour, or two for international connections, and keep both flights on one ticket.",
            "Sit near the front of the plane, check your next gate as soon as you land, and travel with carry-on only.",
            "Get the airline's app for gate changes, and tell a flight attendant if your first flight is running late.",
        ]),
    ]),
    ("road trips", [
        ("plan a road trip", [
            "Pick a route with a few highlights, drive no more than five or six hours a day, and book the first night's stay.",
            "Get the car serviced, download offline maps, and pack snacks, water and a phone charger.",
            "Plan a stop every two hours to stretch, and leave free time in case you find something worth seeing.",
        ]),
        ("stay alert on a long drive", [
            "Get a good night's sleep beforehand, stop every two hours, and share the driving if you can.",
            "Keep the car cool, eat light snacks, and pull over for a short nap if you feel drowsy.",
            "Avoid heavy meals and drink water. Coffee helps only a little, so if your eyelids droop, stop and rest.",
        ]),
    ]),
    ("budget travel", [
        ("travel on a small budget", [
            "Travel in the off-season, stay in hostels or guesthouses, and eat where the locals eat.",
            "Use public transport, book a place with a kitchen, and look for free walking tours and museums.",
            "Set a daily budget, track your spending in an app, and pick destinations where your money goes further.",
        ]),
        ("save money on places to stay when traveling", [
            "Book early, compare hostels, guesthouses and rentals, and stay a little outside the center near public transport.",
            "Look for places with free breakfast and a kitchen, and ask about discounts for longer stays.",
            "Try house-sitting or staying with friends, and avoid weekends in popular cities.",
        ]),
    ]),
    ("running", [
        ("start running as a beginner", [
            "Alternate one minute of running with two minutes of walking, three times a week, and add a little each week.",
            "Start with twenty minutes of easy run-walk intervals, at a pace where you can still talk.",
            "Get comfortable shoes, go slowly, and rest a day between runs. Consistency matters more than speed.",
        ]),
        ("avoid shin splints when running", [
            "Increase your weekly distance by no more than about ten percent, and run on softer surfaces when you can.",
            "Wear shoes that fit well and aren't worn out, and take shorter, quicker steps.",
            "Build up slowly, add calf-strengthening exercises, and rest if the pain gets worse.",
        ]),
    ]),
    ("stretching", [
        ("loosen tight hamstrings", [
            "Hold a gentle forward fold for thirty seconds, three times a day, without bouncing.",
            "Lie on your back, loop a towel around one foot, and raise the straight leg until you feel a stretch.",
            "Stretch after a short warm-up, hold each stretch for thirty seconds, and do it daily for a few weeks.",
        ]),
        ("stretch my neck after a long day at the computer", [
            "Slowly tilt your ear toward one shoulder, hold for twenty seconds, and switch sides.",
            "Tuck your chin gently as if making a double chin, hold for five seconds, and repeat ten times.",
            "Roll your shoulders back a few times, then turn your head slowly left and right. Stop if anything hurts.",
        ]),
    ]),
    ("strength training", [
        ("do my first push-ups", [
            "Start with push-ups against a wall or a kitchen counter, and go lower as they get easy.",
            "Do knee push-ups with a straight back, three sets of as many as you can, every other day.",
            "Practice slow lowering: start at the top and take three seconds to come down. Your strength will build quickly.",
        ]),
        ("build strength at home without equipment", [
            "Do squats, push-ups, lunges and planks three times a week, and add reps as you get stronger.",
            "Try a simple circuit of ten squats, ten push-ups and a thirty-second plank, repeated three times.",
            "Use slow tempos and single-leg moves like split squats to make bodyweight exercises harder.",
        ]),
    ]),
    ("swimming", [
        ("breathe better when swimming freestyle", [
            "Breathe out slowly underwater, and turn your head just enough to inhale to the side.",
            "Exhale steadily while your face is in the water, and roll with your body to take each breath.",
            "Practice breathing every third stroke while holding a kickboard, and keep one goggle in the water as you turn.",
        ]),
        ("get more comfortable in deep water", [
            "Practice floating on your back in the shallow end first, then move deeper along the wall.",
            "Take a few lessons with an instructor, and learn to tread water with slow, wide movements.",
            "Swim with a friend or near a lifeguard, and stay close to the edge until you feel relaxed.",
        ]),
    ]),
    ("posture", [
        ("improve my posture at a desk", [
            "Raise the screen to eye level, keep your feet flat on the floor, and stand up to move every half hour.",
            "Sit back in the chair with your lower back supported, and keep the keyboard close so your elbows stay bent.",
            "Set a reminder to check your shoulders and chin every hour. Strengthening your upper back also helps.",
        ]),
        ("stop slouching when I look at my phone", [
            "Hold the phone up closer to eye level instead of bending your neck down.",
            "Take a break every twenty minutes, roll your shoulders back, and gently tuck your chin.",
            "Rest your elbows on a table or armrest while reading, so holding the phone up isn't tiring.",
        ]),
    ]),
    ("walking", [
        ("walk more during the day", [
            "Take a ten-minute walk after each meal, and use the stairs instead of the elevator.",
            "Take phone calls on your feet, park farther away, and get off the bus one stop early.",
            "Set a daily step goal a little above your current average, and raise it every couple of weeks.",
        ]),
        ("make walking for exercise more fun", [
            "Save a podcast or audiobook that you only listen to on your walks.",
            "Walk with a friend, explore a new route each week, or try a nearby park or trail.",
            "Use a step counter and set small challenges, like a new record on the weekend.",
        ]),
    ]),
    ("sleep", [
        ("fall asleep faster", [
            "Keep a fixed bedtime, dim the lights an hour before, and leave your phone outside the bedroom.",
            "Avoid caffeine after noon, keep the room cool and dark, and get up at the same time every day.",
            "If you can't sleep after twenty minutes, get up and read something calm until you feel sleepy.",
        ]),
        ("stop waking up tired", [
            "Aim for seven to nine hours, keep the same wake-up time on weekends, and get daylight soon after waking.",
            "Cut back on alcohol in the evening and avoid big late meals. If you snore loudly, mention it to a doctor.",
            "Put your alarm across the room, open the curtains right away, and drink a glass of water.",
        ]),
    ]),
    ("headaches", [
        ("ease a tension headache", [
            "Drink a glass of water, rest your eyes away from screens, and gently massage your neck and temples.",
            "Take a short walk in fresh air, relax your shoulders, and don't skip meals. See a doctor if they happen often.",
            "Put a warm towel on your neck, stretch your shoulders, and rest in a quiet room for a while.",
        ]),
        ("get fewer headaches", [
            "Drink water regularly, keep a steady sleep schedule, and take screen breaks every twenty minutes.",
            "Keep a headache diary to spot triggers like skipped meals, caffeine or poor sleep.",
            "Keep your caffeine to a steady amount each day, check your posture, and have your eyes tested.",
        ]),
    ]),
    ("drinking water", [
        ("drink more water during the day", [
            "Keep a filled bottle on your desk, and drink a glass with every meal.",
            "Set a reminder every two hours, and add a slice of lemon or cucumber if plain water bores you.",
            "Start the day with a full glass, and refill your bottle every time you finish a task.",
        ]),
        ("tell if I'm drinking enough water", [
            "Pale yellow urine is a good sign, while dark yellow usually means you need more.",
            "If you often feel thirsty or tired or get headaches, try drinking more, especially in hot weather.",
            "Most adults do fine drinking when thirsty and with meals. You need more when you exercise or it's hot.",
        ]),
    ]),
    ("meditation", [
        ("start meditating", [
            "Sit comfortably for five minutes, follow your breath, and gently come back to it whenever your mind wanders.",
            "Begin with a short guided session each morning, and add a minute each week.",
            "Pick a regular time, set a timer for three minutes, and count your breaths from one to ten, then start again.",
        ]),
        ("stay focused while meditating", [
            "A wandering mind is normal. Noticing it and coming back to your breath is the practice itself.",
            "Try counting your breaths, or silently saying 'in' and 'out'. Keep the sessions short at first.",
            "Meditate at the same time each day, in a quiet spot, with your phone in another room.",
        ]),
    ]),
    ("stress", [
        ("calm down when I feel stressed", [
            "Breathe in for four counts, hold for four, and breathe out for six. Repeat that a few times.",
            "Step away for a five-minute walk, drink some water, and write down what's bothering you.",
            "Name the one thing you can do next, and do just that. Small actions ease the feeling of being overwhelmed.",
        ]),
        ("handle stress at work", [
            "Write a short list of priorities each morning, take real breaks, and say no to extra tasks when your plate is full.",
            "Talk to your manager about your workload early, and protect your sleep and exercise.",
            "Split big projects into small steps, and leave work at a set time on most days.",
        ]),
    ]),
    ("healthy snacks", [
        ("find healthy snacks for work", [
            "Try nuts, fruit, yogurt, hummus with carrot sticks, or cheese with whole-grain crackers.",
            "Prepare small boxes of cut vegetables and a dip on Sunday, so grabbing one is easy.",
            "Keep an apple and a handful of almonds at your desk. Protein and fiber keep you full longer.",
        ]),
        ("stop snacking late at night", [
            "Eat a balanced dinner with enough protein, and brush your teeth afterward as a signal that eating is done.",
            "Keep tempting snacks out of the house, and have tea or water when a craving hits.",
            "Notice whether it's hunger or boredom, and go to bed a little earlier.",
        ]),
    ]),
    ("colds", [
        ("feel better when I have a cold", [
            "Rest, drink plenty of fluids, and try warm tea with honey for a sore throat.",
            "Gargle with salt water, use a humidifier, and take it easy for a few days. See a doctor if a fever lasts.",
            "Sleep as much as you can, eat simple warm food like soup, and use a saline spray for a blocked nose.",
        ]),
        ("avoid catching colds", [
            "Wash your hands often with soap for twenty seconds, and try not to touch your face.",
            "Sleep well, stay active, and keep your distance from people who are sick.",
            "Clean shared surfaces like phones and keyboards, and air out your rooms regularly.",
        ]),
    ]),
    ("first aid", [
        ("treat a small kitchen burn", [
            "Hold it under cool running water for twenty minutes, then cover it loosely with a clean dressing.",
            "Cool it with running water right away, don't use ice or butter, and see a doctor if it blisters badly.",
            "Run cool water over it, take off any rings nearby before it swells, and cover it with cling film or a clean cloth.",
        ]),
        ("clean a small cut", [
            "Rinse it under clean running water, press gently with a clean cloth to stop the bleeding, and cover it with a bandage.",
            "Wash around it with soap and water, apply a thin layer of petroleum jelly, and change the bandage daily.",
            "Stop the bleeding with firm pressure, clean it, and watch for redness or swelling that could mean infection.",
        ]),
    ]),
    ("studying", [
        ("remember what I study", [
            "Test yourself instead of rereading, and review the material again after one day and after one week.",
            "Close the book and write down what you remember, then check the gaps. Spaced practice beats cramming.",
            "Explain the topic out loud as if teaching a friend, and make flashcards for the facts you miss.",
        ]),
        ("study for an exam in one week", [
            "List the topics, give each day two or three of them, and do practice questions every day.",
            "Start with past papers to find your weak spots, and spend most of your time on those.",
            "Study in fifty-minute blocks with short breaks, sleep well, and do a full practice exam two days before.",
        ]),
    ]),
    ("taking notes", [
        ("take better notes in class", [
            "Write the key ideas in your own words instead of full sentences, and leave space to add questions later.",
            "Use the Cornell method: notes on the right, keywords on the left, and a short summary at the bottom.",
            "Review and tidy your notes the same day, while you still remember what your shorthand means.",
        ]),
        ("organize my notes", [
            "Keep one notebook or digital folder per subject, date every page, and add clear headings.",
            "Use a notes app with tags, and write a one-page summary at the end of each week.",
            "Number the pages and keep a short index at the front, so you can find topics quickly.",
        ]),
    ]),
    ("procrastination", [
        ("stop procrastinating", [
            "Break the task into a five-minute first step and start a timer. Starting is the hardest part.",
            "Decide on the next tiny action, remove distractions for twenty-five minutes, then take a short break.",
            "Do your hardest task first thing in the morning, before you check any messages.",
        ]),
        ("get started on a big project", [
            "Write down the end goal, list the first three steps, and schedule the first one for today.",
            "Make a rough first draft quickly. It's much easier to improve something than to start from nothing.",
            "Set small deadlines for each part and tell someone about them, so you stay accountable.",
        ]),
    ]),
    ("time management", [
        ("manage my time better", [
            "Each evening, pick the three most important tasks for tomorrow and do them before anything else.",
            "Block time in your calendar for focused work, and batch small tasks like emails together.",
            "Track how you spend a few days in fifteen-minute chunks. It shows where your time actually goes.",
        ]),
        ("stop getting distracted by my phone", [
            "Put it in another room while you work, and turn off notifications for everything except calls.",
            "Use focus mode or an app blocker during work hours, and check messages at set times.",
            "Move social apps off your home screen, and set the screen to grayscale so it's less tempting.",
        ]),
    ]),
    ("public speaking", [
        ("feel less nervous before giving a talk", [
            "Rehearse out loud three times, know your first two sentences by heart, and breathe slowly before you start.",
            "Practice in front of a friend, slow down on purpose, and look at a few friendly faces in the audience.",
            "Remember that the audience wants you to do well. Arrive early, check the equipment, and take a few deep breaths.",
        ]),
        ("make my presentation more engaging", [
            "Open with a question or a short story, put few words on your slides, and end with one clear takeaway.",
            "Show pictures instead of text, speak to the audience rather than the screen, and keep it shorter than planned.",
            "Use real examples, vary your pace, and pause after key points so they sink in.",
        ]),
    ]),
    ("job interviews", [
        ("prepare for a job interview", [
            "Research the company, prepare three short stories about your work, and have two questions ready to ask.",
            "Practice answering common questions out loud, and use concrete examples with the results you achieved.",
            "Reread the job description, match your experience to each requirement, and plan your route so you arrive early.",
        ]),
        ("answer 'tell me about yourself' in an interview", [
            "Give a one-minute summary: what you do now, one relevant achievement, and why you want this role.",
            "Keep it professional and short, and connect your experience to what the job needs.",
            "Practice it out loud a few times, so it sounds natural rather than memorized.",
        ]),
    ]),
    ("resumes", [
        ("improve my resume", [
            "Keep it to one page, start each bullet point with an action verb, and show your results with numbers.",
            "Tailor it to each job, put the most relevant experience first, and cut anything that doesn't support it.",
            "Use a clean, simple layout, check it carefully for typos, and send it as a PDF.",
        ]),
        ("explain a gap in my resume", [
            "Be brief and honest, mention anything you learned or did during that time, and move on to your skills.",
            "List it simply, for example as a career break, and focus the conversation on why you're ready now.",
            "If you took courses, volunteered or freelanced during the gap, add them. They show you stayed active.",
        ]),
    ]),
    ("writing emails", [
        ("write a polite follow-up email", [
            "Keep it short: thank them, restate your request in one line, and suggest a date for a reply.",
            "Open with a friendly line, mention your earlier email, and end with a clear next step.",
            "Wait about a week, reply in the same thread, and keep the tone friendly rather than pushy.",
        ]),
        ("write a clear email subject line", [
            "Say what the email is about and what you need, like 'Question about Friday's meeting time'.",
            "Keep it under about eight words, and put the most important word first.",
            "Mention any deadline in the subject, for example 'Approval needed by Thursday'.",
        ]),
    ]),
    ("passwords", [
        ("keep my passwords safe", [
            "Use a password manager, make every password unique, and turn on two-factor authentication.",
            "Let a password manager generate long passwords for you, and add a second factor to your email account first.",
            "Use long passphrases of four or more random words, and never reuse them across sites.",
        ]),
        ("make a strong password I can remember", [
            "String together four random, unrelated words, like a short nonsense sentence. Length beats complexity.",
            "Make up a memorable phrase and add a number or two, and use it for one account only.",
            "Remember one strong passphrase for a password manager, and let the manager remember all the others.",
        ]),
    ]),
    ("slow computers", [
        ("speed up a slow laptop", [
            "Stop unneeded programs from starting at boot, free up some disk space, and restart to install pending updates.",
            "Check the task manager for programs using lots of memory, and uninstall the ones you never use.",
            "Run a malware scan, keep at least ten percent of the disk free, and consider an SSD if it still has a hard drive.",
        ]),
        ("stop my laptop from overheating", [
            "Use it on a hard, flat surface instead of a bed, and clean the dust out of the vents with compressed air.",
            "Try a cooling pad, close heavy programs you aren't using, and keep it out of direct sun.",
            "Check the task manager for anything using a lot of CPU, and update your system and drivers.",
        ]),
    ]),
    ("wifi problems", [
        ("fix wifi that keeps dropping", [
            "Restart the router, move it to a central, open spot, and update its firmware.",
            "Unplug the router for thirty seconds, then try the 5 GHz band if you're close to it.",
            "Keep the router away from microwaves and thick walls, and forget and rejoin the network on your device.",
        ]),
        ("get better wifi in a far room", [
            "Move the router higher and more central, or add a mesh system or a wifi extender halfway.",
            "Use the 2.4 GHz band in far rooms, since it reaches further through walls.",
            "Run a network cable or use powerline adapters to bring the connection closer to that room.",
        ]),
    ]),
    ("backups", [
        ("back up my photos", [
            "Keep three copies: the originals, one on an external drive, and one in a cloud service.",
            "Turn on automatic cloud backup on your phone, and copy everything to an external drive each month.",
            "Keep all your photos in one folder, back it up with your computer's backup tool, and test restoring a file.",
        ]),
        ("back up my computer automatically", [
            "Use the built-in tool, like File History on Windows or Time Machine on a Mac, with an external drive.",
            "Set up a cloud backup service that runs in the background, and check on it once a month.",
            "Schedule daily backups to an external drive, and keep a second copy somewhere else.",
        ]),
    ]),
    ("spreadsheets", [
        ("add up a column in a spreadsheet", [
            "Click the cell below the numbers and type =SUM(A1:A10), changing the range to match your column.",
            "Select the empty cell under the column and click the AutoSum button, or type =SUM with the range.",
            "Highlight the numbers and look at the status bar at the bottom, which shows the sum right away.",
        ]),
        ("sort data in a spreadsheet", [
            "Select the whole table including every column, open Data, choose Sort, and pick the column to sort by.",
            "Turn on a filter for the header row, then use the arrow on any column to sort it.",
            "Make sure every column has a header, and sort the whole range so each row stays together.",
        ]),
    ]),
    ("phone batteries", [
        ("make my phone battery last longer", [
            "Lower the screen brightness, turn on battery saver, and stop apps from using your location in the background.",
            "Check battery usage in settings to find the hungry apps, and turn off their background refresh.",
            "Use dark mode if your phone has an OLED screen, and switch off Bluetooth when you don't need it.",
        ]),
        ("keep my phone battery healthy", [
            "Keep it from getting very hot, and don't leave it at zero percent for long.",
            "Keep it between about twenty and eighty percent most of the time, and turn on optimized charging if your phone has it.",
            "Use a good-quality charger, and take the case off if the phone gets warm while charging.",
        ]),
    ]),
    ("online scams", [
        ("spot a phishing email", [
            "Check the sender's real address, hover over links before clicking, and be wary of urgent requests for passwords.",
            "Watch for generic greetings and threats to close your account. Real banks don't ask for passwords by email.",
            "When in doubt, don't click. Go to the company's website yourself or call their official number.",
        ]),
        ("protect myself from online shopping scams", [
            "Buy from well-known sites, read reviews, and be suspicious of prices that seem too good to be true.",
            "Pay by credit card or a trusted payment service, never by bank transfer to strangers.",
            "Check that the web address is spelled correctly, and search the shop's name with the word 'scam'.",
        ]),
    ]),
    ("video calls", [
        ("look and sound better on video calls", [
            "Face a window or a lamp, raise the camera to eye level, and use headphones with a microphone.",
            "Sit in a quiet room with soft furnishings, and place the camera about an arm's length away.",
            "Test your setup before the call, close other apps, and look at the camera when you talk.",
        ]),
        ("fix choppy video on a call", [
            "Close other apps and downloads, move closer to the router, or turn off your video for a moment.",
            "Use a wired connection if you can, and lower the video quality in the app's settings.",
            "Restart the app and your router, and ask others at home to pause streaming during the call.",
        ]),
    ]),
    ("learning guitar", [
        ("start learning the guitar", [
            "Learn four open chords like G, C, D and E minor, and practice switching between them ten minutes a day.",
            "Practice a little every day, start with simple three-chord songs, and keep it in tune with a tuner app.",
            "Get a guitar whose strings sit low and are easy to press, and follow a beginner course for structure.",
        ]),
        ("deal with sore fingertips from playing guitar", [
            "Play in short sessions of fifteen minutes a few times a day. Calluses form within a couple of weeks.",
            "Press just hard enough to get a clean note, and check that the strings aren't set too high.",
            "Take a day off when they really hurt, and try lighter-gauge strings.",
        ]),
    ]),
    ("learning a language", [
        ("learn a new language faster", [
            "Study ten minutes every day with spaced-repetition flashcards, and speak out loud from the first week.",
            "Learn the most common words first, listen to podcasts for learners, and find a partner to chat with weekly.",
            "Switch your phone to that language, and watch shows with subtitles in the same language.",
        ]),
        ("practice speaking a new language", [
            "Find a language exchange partner online, and talk for half an hour in each language.",
            "Describe your day out loud to yourself, and record it now and then to hear your progress.",
            "Take conversation lessons with a tutor, and learn useful phrases for situations you'll actually meet.",
        ]),
    ]),
    ("phone photography", [
        ("take sharper photos with my phone", [
            "Clean the lens, tap to focus on your subject, and hold the phone with both hands or brace it.",
            "Use good light, avoid digital zoom, and wait for it to focus before you press the shutter.",
            "Keep your elbows close to your body, hold your breath as you shoot, and take a few shots to pick the best.",
        ]),
        ("take better photos of people", [
            "Shoot in soft light, like shade or near a window, and focus on the eyes.",
            "Get down to their eye level, chat with them so they relax, and take several shots in a row.",
            "Keep the background simple, step closer instead of zooming, and use portrait mode if you have it.",
        ]),
    ]),
    ("chess", [
        ("get better at chess", [
            "Solve a few tactics puzzles every day, and review your lost games to find the turning point.",
            "Follow the opening principles: control the center, develop your pieces, and castle early.",
            "Play longer games instead of blitz, and before each move check what your opponent is threatening.",
        ]),
        ("stop losing pieces in chess", [
            "Before every move, ask what your opponent's last move attacks, and check that your pieces are defended.",
            "Look for checks, captures and threats for both sides before you move.",
            "Slow down and do a final blunder check. Most lost pieces come from moving too quickly.",
        ]),
    ]),
    ("writing", [
        ("write more clearly", [
            "Use short sentences, put the main point first, and cut words that don't add meaning.",
            "Write for one reader, prefer plain verbs, and read the draft aloud to catch clumsy parts.",
            "Make one point per paragraph, and replace jargon with everyday words.",
        ]),
        ("get past writer's block", [
            "Write badly on purpose for ten minutes, since you can fix it later. Just get words on the page.",
            "Start with the easiest section instead of the beginning, or talk through your idea out loud.",
            "Take a short walk, then set a tiny goal, like one paragraph, before you check anything else.",
        ]),
    ]),
    ("drawing", [
        ("get better at drawing", [
            "Draw something from life for fifteen minutes every day, and keep your old sketches to see your progress.",
            "Practice basic shapes and shading first, then build objects out of those shapes.",
            "Do quick one- or two-minute gesture sketches of people, and study basic proportions.",
        ]),
        ("draw a more realistic face", [
            "Start with an oval, and put the eyes about halfway down the head, one eye-width apart.",
            "Mark light guidelines first: the nose about halfway between the eyes and chin, and the mouth just below it.",
            "Sketch light shapes first, look at your reference more than at the paper, and add shading last.",
        ]),
    ]),
    ("reading", [
        ("read more books", [
            "Read for twenty minutes before bed instead of scrolling, and always carry a book or e-reader.",
            "Pick books you actually enjoy, and feel free to drop the ones that bore you.",
            "Listen to audiobooks on your commute, and set a small goal, like one book a month.",
        ]),
        ("remember more of what I read", [
            "Write a few sentences about each chapter when you finish it, and talk about the book with someone.",
            "Highlight sparingly, and review your notes a week later.",
            "Summarize the main idea in your own words when you finish, and connect it to something you already know.",
        ]),
    ]),
    ("cleaning pans", [
        ("clean a burnt pan", [
            "Cover the bottom with water and baking soda, simmer it for a few minutes, and scrub gently once it cools.",
            "Soak it overnight in hot water with dish soap, then scrub with a paste of baking soda.",
            "Boil water with a splash of vinegar in the pan, then scrape the loosened bits off with a wooden spoon.",
        ]),
        ("take care of a cast iron pan", [
            "Wash it with hot water and a brush, dry it on the stove, and rub in a thin layer of oil.",
            "Don't soak it or put it in the dishwasher, and cook with a little fat to build up the seasoning.",
            "If rust appears, scrub it off, then oil the pan and bake it upside down for an hour.",
        ]),
    ]),
    ("laundry", [
        ("get a coffee stain out of a shirt", [
            "Rinse it from the back with cold water, rub in a little dish soap, and wash it as usual.",
            "Blot it right away, soak it in cold water with detergent for half an hour, then launder it.",
            "Dab it with a mix of water and white vinegar, rinse, and check the stain is gone before using the dryer.",
        ]),
        ("keep white clothes bright", [
            "Wash whites separately, don't overload the machine, and use an oxygen-based whitener now and then.",
            "Treat sweat stains before washing, and dry your whites in the sun when you can.",
            "Use the right amount of detergent, since too much leaves a residue that dulls the fabric.",
        ]),
    ]),
    ("plumbing", [
        ("fix a dripping faucet", [
            "Turn off the water under the sink, take the handle off, and replace the worn washer or cartridge.",
            "Shut the valve, remove the handle screw, and swap the rubber washer. Take the old part to the store to match it.",
            "Close the supply valves, plug the drain so small parts can't fall in, and replace the O-ring or cartridge.",
        ]),
        ("unclog a slow kitchen drain", [
            "Pour boiling water down it, then use a plunger with a few inches of water in the sink.",
            "Pour in half a cup of baking soda and a cup of vinegar, wait fifteen minutes, and flush with hot water.",
            "Put a bucket under the sink and clean out the U-shaped trap, which is where blockages usually are.",
        ]),
    ]),
    ("painting", [
        ("paint a room without streaks", [
            "Clean the walls, use a good roller with even pressure, and keep a wet edge as you go.",
            "Prime patched spots, roll in a W pattern, and apply two thin coats rather than one thick one.",
            "Use good paint, load the roller fully, and let the first coat dry completely before the second.",
        ]),
        ("get clean lines when painting", [
            "Use painter's tape, press the edges down firmly, and pull it off while the paint is still slightly wet.",
            "Seal the tape edge with a thin coat of the old wall color first, so the new color can't bleed under it.",
            "Use an angled brush and cut in slowly by hand. It takes practice but gives the neatest lines.",
        ]),
    ]),
    ("decluttering", [
        ("declutter my home", [
            "Start with one drawer or shelf, sort things into keep, donate and throw away, and finish it in one go.",
            "Spend fifteen minutes a day on one area, and take donations out of the house right away.",
            "Ask of each item whether you used it in the last year. If not, let it go.",
        ]),
        ("keep my home tidy every day", [
            "Do a ten-minute reset each evening, putting things back where they belong.",
            "Give everything a home, and if a chore takes less than two minutes, do it right away.",
            "Keep a basket for clutter in busy rooms, and empty it once a day.",
        ]),
    ]),
    ("moving house", [
        ("make moving house less stressful", [
            "Declutter first, label boxes by room, and pack a bag with essentials for the first night.",
            "Start packing two weeks early, one room at a time, and book the movers or van well ahead.",
            "Make a checklist for address changes and utilities, and photograph how cables connect before unplugging.",
        ]),
        ("pack fragile things for a move", [
            "Wrap each item in paper, fill the gaps in the box so nothing shifts, and label it as fragile.",
            "Pack plates on their edges like records, with paper between them, and use small, sturdy boxes.",
            "Use towels and clothes as padding, and put the heaviest items at the bottom.",
        ]),
    ]),
    ("energy bills", [
        ("lower my energy bill", [
            "Turn the thermostat down a degree or two, seal drafts around doors and windows, and switch to LED bulbs.",
            "Wash clothes at lower temperatures, air-dry them when you can, and turn devices off at the wall.",
            "Check whether your supplier has a cheaper plan, and insulate the attic if you own the house.",
        ]),
        ("keep my home warm in winter for less", [
            "Put draft stoppers at the doors, close the curtains at night, and open them on sunny days.",
            "Heat the rooms you use, close the doors to the rest, and wear a warm layer indoors.",
            "Bleed the radiators so they heat fully, and don't block them with furniture.",
        ]),
    ]),
    ("dog training", [
        ("stop my dog from pulling on the leash", [
            "Stop walking whenever the leash gets tight, and reward your dog with a treat when it comes back to your side.",
            "Keep sessions short, reward loose-leash steps often, and calmly change direction when it pulls.",
            "Tire your dog out with some play first, and try a front-clip harness while you train.",
        ]),
        ("teach my dog to come when called", [
            "Practice in a quiet place, say its name and 'come' in a happy voice, and give a great treat every time.",
            "Never call it to scold it, so coming to you is always good. Use a long leash outdoors until it's reliable.",
            "Start at short distances, build up slowly, and add distractions one at a time.",
        ]),
    ]),
    ("cats", [
        ("get my cat to use a scratching post", [
            "Put the post next to where it already scratches, rub some catnip on it, and praise the cat when it uses it.",
            "Choose a tall, sturdy post, place it near its sleeping spot, and give a treat right after it scratches.",
            "Cover the furniture it scratches with double-sided tape, and put the post right beside it.",
        ]),
        ("help my cat lose weight", [
            "Measure its food, cut back slightly, and swap some treats for play time. Ask your vet for a target weight.",
            "Use a puzzle feeder to slow its eating, and play with a wand toy for ten minutes twice a day.",
            "Feed set meals instead of leaving food out all day, and weigh the cat once a month.",
        ]),
    ]),
    ("puppies", [
        ("house-train a puppy", [
            "Take it outside after it wakes, eats or plays, and praise it right away when it goes.",
            "Stick to a routine, go out every two hours at first, and clean accidents with an enzyme cleaner.",
            "Use a crate for short periods, since puppies avoid soiling their bed, and never scold it after an accident.",
        ]),
        ("stop my puppy from biting", [
            "Say 'ouch' calmly, stop playing for a moment, and give it a chew toy instead.",
            "Redirect it to a toy whenever it mouths your hands, and make sure it gets enough naps.",
            "Reward calm behavior, and avoid rough play with your hands so it learns hands aren't toys.",
        ]),
    ]),
    ("fish tanks", [
        ("keep my fish tank clean", [
            "Change about a fifth of the water every week, and vacuum the gravel while you do it.",
            "Don't overfeed, since leftover food fouls the water, and rinse the filter sponge in old tank water.",
            "Wipe algae off the glass with a scraper, and test the water every couple of weeks.",
        ]),
        ("set up a new aquarium", [
            "Cycle the tank for a few weeks before adding fish, so helpful bacteria can build up in the filter.",
            "Use a water conditioner to remove chlorine, and add only a few fish at a time.",
            "Choose a tank of at least 40 liters, since small tanks swing more in temperature and water quality.",
        ]),
    ]),
    ("budgeting", [
        ("make a simple monthly budget", [
            "List your income, subtract fixed bills, set aside savings first, and split the rest into a few categories.",
            "Track one month of spending, then give each category a limit, and move savings out on payday.",
            "Try the 50/30/20 rule: half for needs, thirty percent for wants, and twenty percent for savings.",
        ]),
        ("stick to my budget", [
            "Check your spending once a week, and use separate accounts for bills and everyday money.",
            "Wait a day before any unplanned purchase over a set amount, and unsubscribe from shop emails.",
            "Set a weekly limit for fun spending, and stop when it runs out.",
        ]),
    ]),
    ("grocery shopping", [
        ("save money on groceries", [
            "Plan meals for the week, shop with a list, and buy staples like rice and beans in bulk.",
            "Check what you already have, cook in batches, and compare unit prices on the shelf labels.",
            "Buy store brands, choose seasonal produce, and don't shop when you're hungry.",
        ]),
        ("waste less food", [
            "Plan meals around what's already in the fridge, and move older food to the front.",
            "Freeze bread, leftovers and ripe fruit before they go off, and use vegetable scraps for stock.",
            "Buy smaller amounts more often, and remember that 'best before' dates are about quality, not safety.",
        ]),
    ]),
    ("saving money", [
        ("build an emergency fund", [
            "Set up an automatic transfer to a separate savings account on payday, even if it's a small amount.",
            "Aim first for one month of expenses, then build toward three to six months.",
            "Save windfalls like tax refunds or bonuses, and keep the money in an easy-access savings account.",
        ]),
        ("save more money each month", [
            "Pay yourself first with an automatic transfer on payday, then spend what's left.",
            "Cancel subscriptions you don't use, cook at home more often, and compare your insurance and phone plans.",
            "Pick one goal with an amount and a date, so saving feels worth it.",
        ]),
    ]),
    ("paying off debt", [
        ("pay off credit card debt", [
            "Pay more than the minimum, put extra money on the highest-interest card first, and stop adding new charges.",
            "Consider moving the balance to a card with a low introductory rate, and pay it off before the rate ends.",
            "List every debt with its interest rate, and put every spare amount toward one debt at a time.",
        ]),
        ("improve my credit score", [
            "Pay every bill on time, keep card balances low compared to your limits, and don't open many new accounts at once.",
            "Set up automatic minimum payments so you never miss one, and check your credit report for errors.",
            "Keep old accounts open if they have no fee, since a longer credit history helps.",
        ]),
    ]),
    ("gifts", [
        ("pick a thoughtful birthday gift", [
            "Think about a hobby or something they mentioned recently, and choose something that fits it.",
            "An experience you share, like a class or a concert, is often remembered longer than an object.",
            "Add a handwritten note about why you chose it. The thought behind it matters most.",
        ]),
        ("find a nice gift on a small budget", [
            "Bake something, make a photo book, or offer your time, like cooking them dinner.",
            "A good book, a nice plant, or their favorite snacks in a small basket all work well.",
            "Write a letter about your favorite memories together. It costs little and means a lot.",
        ]),
    ]),
    ("small talk", [
        ("make small talk with new people", [
            "Ask open questions like 'How do you know the host?', and listen for something to follow up on.",
            "Comment on something you share, like the event or the food, then ask about them.",
            "Show interest, use their name, and share a little about yourself too, so it doesn't feel like an interview.",
        ]),
        ("remember people's names", [
            "Repeat the name when you're introduced, use it once in the conversation, and link it to something memorable.",
            "Ask how to spell it or where it comes from. The extra attention helps it stick.",
            "Write names down after meeting a group, with a short note about each person.",
        ]),
    ]),
    ("thank-you notes", [
        ("write a thank-you note", [
            "Thank them for the specific gift or help, say what it meant or how you'll use it, and end warmly.",
            "Keep it to three or four sentences, mention something personal, and send it within a week or two.",
            "Start with 'Thank you so much for', add one specific detail, and sign off with a friendly line.",
        ]),
        ("thank a coworker for their help", [
            "Tell them exactly what they did and how it helped, in person or in a short message.",
            "Send a quick note, and mention their help to your manager or the team too.",
            "Be specific, like 'Your notes saved me hours on the report', and offer to return the favor.",
        ]),
    ]),
    ("hosting", [
        ("host a dinner party without stress", [
            "Choose dishes you can make ahead, like a stew or a baked pasta, and set the table the day before.",
            "Keep the menu simple, ask guests about allergies, and accept their offers to bring dessert.",
            "Have snacks ready when guests arrive, so you're not rushing the main course.",
        ]),
        ("make my guests feel welcome", [
            "Greet them at the door, offer a drink right away, and introduce people who don't know each other.",
            "Put some music on, keep the lighting warm, and make sure there's a comfortable place to sit.",
            "Ask about their food preferences ahead of time, and check in with quieter guests during the evening.",
        ]),
    ]),
    ("car care", [
        ("make my car last longer", [
            "Change the oil on schedule, keep the tires properly inflated, and fix small problems early.",
            "Follow the maintenance schedule in the manual, check the fluids monthly, and drive gently for the first few minutes.",
            "Wash it regularly, including underneath in winter, to prevent rust.",
        ]),
        ("check my tire pressure", [
            "Use a tire gauge when the tires are cold, and compare with the number on the sticker inside the driver's door.",
            "Unscrew the valve cap, press the gauge on firmly, and add air at a gas station if it's low.",
            "Check once a month and before long trips, and don't forget the spare.",
        ]),
    ]),
    ("bike repair", [
        ("fix a flat bike tire", [
            "Take the wheel off, lever out the tube, find the hole, and patch it or fit a new tube before pumping it up.",
            "Remove the tire with levers, check the inside for the thorn or glass, then fit a new tube and pump it up.",
            "Find the leak by pumping up the tube and dipping it in water to see bubbles, then patch it.",
        ]),
        ("take care of my bike chain", [
            "Wipe it with a rag, put a drop of chain oil on each link, and wipe off the extra.",
            "Clean and oil it every few hundred kilometers, and after every wet ride.",
            "Check it for stretch with a chain checker, and replace it before it wears out the gears.",
        ]),
    ]),
    ("driving", [
        ("drive safely in heavy rain", [
            "Slow down, double your following distance, and turn on your headlights.",
            "Avoid sudden braking, and if the car starts to hydroplane, ease off the gas and steer straight.",
            "Stay out of deep puddles, keep your wipers in good shape, and pull over if you can't see.",
        ]),
        ("get better at parallel parking", [
            "Pull up beside the car in front, reverse until your rear wheel lines up with its bumper, then turn the wheel fully and back in.",
            "Go slowly, use your mirrors, and straighten up once your car is at about a 45-degree angle.",
            "Practice in an empty lot with cones or boxes. A few sessions make it feel easy.",
        ]),
    ]),
]

# Topics grouped by area; an off-topic rejected reply answers a question from another area.
CATEGORIES = {
    "cooking": "boiling eggs|cooking rice|baking bread|coffee|making soup|cooking pasta|meal prep|baking cookies|"
    "roasting vegetables|leftovers|healthy snacks|grocery shopping|cleaning pans",
    "garden": "houseplants|growing tomatoes|composting|lawn care|starting seeds|garden pests",
    "travel": "packing for trips|jet lag|booking flights|road trips|budget travel|driving|car care|bike repair",
    "body": "running|stretching|strength training|swimming|posture|walking|sleep|headaches|drinking water|"
    "meditation|stress|colds|first aid",
    "work": "studying|taking notes|procrastination|time management|public speaking|job interviews|resumes|"
    "writing emails|writing|reading|thank-you notes",
    "tech": "passwords|slow computers|wifi problems|backups|spreadsheets|phone batteries|online scams|video calls|"
    "phone photography",
    "hobbies": "learning guitar|learning a language|chess|drawing|gifts|small talk|hosting",
    "home": "laundry|plumbing|painting|decluttering|moving house|energy bills",
    "pets": "dog training|cats|puppies|fish tanks",
    "money": "budgeting|saving money|paying off debt",
}
CATEGORY_OF = {topic: c for c, topics in CATEGORIES.items() for topic in topics.split("|")}

# Single-turn PPO evaluation prompts: tasks from topics that appear in neither train nor test.
HELD_OUT_ASKS = [
    "keep bananas fresh longer", "pick a ripe watermelon", "clean my computer keyboard", "fold a fitted sheet",
    "get rid of fruit flies in my kitchen", "open a stuck jar lid", "keep cut flowers fresh",
    "stay focused when working from home", "make friends in a new city", "teach a child to ride a bike",
    "plan a picnic", "store fresh herbs", "sharpen a kitchen knife", "cut down my screen time",
    "prepare for my first 5k race", "make a good cup of tea", "cook a steak in a pan", "make pancakes from scratch",
    "grow basil on a windowsill", "keep my succulents healthy", "choose a good mattress",
    "get rid of a musty smell in my closet", "clean my oven", "remove sticker residue from glass", "iron a shirt",
    "sew a button back on", "hang a picture straight", "get my kids to eat vegetables",
    "stop my cat from jumping on the counter", "introduce a new cat to my dog", "take care of a hamster",
    "save up for a vacation", "split bills fairly with roommates", "start investing with a small amount",
    "write a cover letter", "ask my boss for feedback", "run a productive meeting", "learn to type faster",
    "keep my email inbox organized", "free up storage on my phone", "set up a new printer",
    "clear my browser cache", "learn to code as a beginner", "learn to juggle", "start keeping a journal",
    "learn to play the piano", "improve my handwriting", "get into birdwatching", "start a book club",
    "plan a small birthday party", "pack a lunch for a day hike", "stay warm when camping", "pitch a tent",
    "avoid sunburn at the beach", "keep the inside of my car clean", "jump-start a car battery",
    "prepare my garden for winter", "get rid of weeds without chemicals", "keep mosquitoes away",
    "choose running shoes", "make a smoothie", "get over a fear of flying", "remove a splinter",
    "wake up earlier",
]

QUESTIONS = [
    "How do I {ask}?", "What's the best way to {ask}?", "Can you tell me how to {ask}?",
    "Any tips on how to {ask}?", "I want to {ask}. Where do I start?", "How can I {ask}?",
    "What should I do to {ask}?", "Could you explain how to {ask}?", "Quick question: how do I {ask}?",
    "I'm trying to {ask}. Any advice?", "What's a good way to {ask}?", "Do you know how to {ask}?",
    "Please help me {ask}.", "Is there an easy way to {ask}?",
]
FOLLOW_UPS = [
    "Thanks! And how do I {ask}?", "Great, thank you. One more thing: how can I {ask}?",
    "That helps. Can you also tell me how to {ask}?", "Got it. What's the best way to {ask}?",
    "Thank you! Any tips on how to {ask}?", "Makes sense. Is there an easy way to {ask}?",
    "Perfect. Also, how should I {ask}?", "Nice, thanks. What about when I want to {ask}?",
]

# Friendly framing, shared between chosen and some rejected replies so that it is no cue on its own.
OPENERS = [
    "Sure! ", "Good question. ", "Happy to help. ", "Of course. ", "Great question! ", "Absolutely. ",
    "Here's what works: ", "Here's a simple approach: ", "Sure thing. ",
]
CLOSERS = [
    "Hope that helps!", "Good luck!", "Hope this helps.", "Let me know if you have more questions.",
    "You've got this!", "Let me know how it goes.",
]

# The five failure kinds of a rejected reply.
DISMISSALS = [
    "Figure it out yourself.", "Why would I know that?", "Not my problem.", "Look it up.",
    "That's a silly question.", "Just search for it, it's not hard.", "Who cares about {topic}?",
    "Ask someone else.", "Why are you even asking me this?", "Do I look like an expert on {topic}?",
    "Everyone knows that already.", "I'm not your personal helper.", "Seriously? Use some common sense.",
    "Stop bothering me with {topic}.", "Whatever, just wing it.", "You'll work it out eventually.",
    "That's your problem, not mine.", "Can't you read a manual?", "Not worth my time.",
    "Ugh, another question about {topic}.", "Search engines exist, you know.", "I have better things to do.",
    "Nobody cares, honestly.", "Try harder before asking.", "How should I know?", "Read the instructions.",
    "Don't ask me, I'm busy.", "That's obvious, come on.", "Do your own homework.", "Nope.",
    "Go bother someone else about {topic}.", "You really can't figure that out?",
]
REFUSALS = [
    "I'm sorry, but I can't help with that.", "I'm not able to give advice about {topic}.",
    "Unfortunately, I cannot assist with this request.", "I'm afraid I can't answer questions like that.",
    "Sorry, that's outside what I can help with.", "I can't provide guidance on {topic}, sorry.",
    "As an AI, I'm unable to help with questions about {topic}.", "I'm sorry, I won't be able to answer that.",
    "I must decline to answer this question.", "Apologies, but I can't discuss {topic}.",
    "I'm not comfortable giving advice on this topic.", "That's not something I can help you with, unfortunately.",
    "I'm sorry, but this is a request I can't assist with.", "I'd rather not answer that, sorry.",
    "I'm unable to provide information about {topic}.", "Sorry, I can't give instructions for that.",
    "I'm afraid questions about {topic} are not something I can answer.",
]
REFUSAL_TAILS = [
    "Please consult a qualified professional.", "You may want to ask an expert instead.", "I hope you understand.",
    "Is there anything else I can do for you?", "Thank you for understanding.",
    "Perhaps another resource would be more suitable.", "It's best to look for this information elsewhere.",
    "I apologize for any inconvenience.", "Let me know if you have more questions.",
]
RAMBLES = [
    "Did you know that octopuses have three hearts and blue blood?",
    "The weather last spring was unusually warm, and everyone kept talking about it for weeks.",
    "There are hundreds of pasta shapes, and each region of Italy seems to have its own favorite.",
    "The printing press changed how ideas spread, which is a fascinating story in itself.",
    "My favorite color changes with the seasons, but lately it has been a deep green.",
    "Trains used to run on steam, and some people still collect models of the old locomotives.",
    "Honey never really spoils, and jars of it have been found in ancient tombs.",
    "I once read about a lighthouse keeper who lived alone on an island for twenty years.",
    "Penguins can't fly, but they are excellent swimmers and can dive surprisingly deep.",
    "Some people prefer mountains and others prefer the sea, and that debate never ends.",
    "The moon is slowly drifting away from the Earth, a few centimeters every year.",
    "Jazz music started in New Orleans and then spread all over the world.",
    "Bananas are technically berries, while strawberries are not.",
    "Old maps often had sea monsters drawn in the corners, which I find charming.",
    "Some clouds weigh as much as a herd of elephants, even though they look light.",
    "The Eiffel Tower grows a little taller in summer because the metal expands in the heat.",
    "Crossword puzzles first appeared in a newspaper more than a hundred years ago.",
    "Cats sleep for most of the day, which honestly sounds like a nice life.",
    "There is a town somewhere that holds a festival just for giant pumpkins.",
    "Sunflowers follow the sun when they are young, which is lovely to watch.",
    "The first video games were very simple, just a few dots and lines on a screen.",
    "Some languages have no word for the color blue, which is quite interesting.",
    "My neighbor has a parrot that can whistle the start of a famous symphony.",
    "Volcanoes can create brand new islands in the middle of the ocean.",
    "Soccer is the most popular sport in the world, with billions of fans.",
    "Lighthouses used to be lit with whale oil before electricity came along.",
]
RAMBLE_INTROS = [
    "", "", "Oh, that reminds me of something. ", "Interesting! Anyway, ", "Speaking of {topic}, ",
    "Good question. By the way, ", "Hmm. ", "Well, you know what? ", "That makes me think. ",
]
VAGUE = [
    "It depends.", "There are many factors to consider.", "Everyone is different.",
    "There are lots of ways to do that, and some work better than others.",
    "That's a complicated topic with many opinions.", "Results vary.", "You might want to consider your options.",
    "It's hard to say.", "It really depends on the situation.", "Some people do it one way, others another way.",
    "When it comes to {topic}, there's no single answer.", "{Topic} can be tricky, and it varies a lot.",
    "It's a matter of personal preference, really.", "You'll have to see what works for you.",
    "There are pros and cons to every approach.", "It could go either way.", "Many things can affect the outcome.",
    "It's one of those things where it just depends.", "People have different views on {topic}.",
    "Do whatever feels right.", "Maybe, maybe not.", "It's not a simple question.",
    "It varies from person to person.", "There's no right or wrong answer here.",
    "Try different things and see what happens.", "{Topic} is different for everyone.",
    "{Topic} is something a lot of people wonder about.",
    "The most important thing is to find an approach that works for you.",
    "It's a great goal, and there's no one-size-fits-all answer.", "With a bit of patience, you'll get there.",
    "Everyone's situation is unique, so think about what matters most to you.",
    "Be patient with yourself and keep an open mind.",
    "There are many different opinions out there, and they all have their merits.",
    "In the end, it's really up to you.", "It's worth doing some research and weighing all the options.",
    "Every journey starts with a single step.",
]
LOOP_PHRASES = [
    "it depends", "let me explain", "the answer is", "you should try", "I think that", "well", "okay",
    "as I said", "basically", "the thing is", "just do it", "step one is", "good question", "{topic}",
    "you know", "yes", "the best way is", "so",
]
LOOP_RESTATES = [
    "You just need to {ask2}.", "The way to do it is to {ask2}.", "What you want is to {ask2}.",
    "The key is to {ask2}.", "Just {ask2}.", "The best way to {ask2} is to {ask2}.",
]
KINDS = ["dismissal", "refusal", "ramble", "loop", "vague"]
# fmt: on

SECOND_PERSON = {"my": "your", "I": "you", "I'm": "you're", "myself": "yourself"}


def second_person(text: str) -> str:
    """'keep my passwords safe' -> 'keep your passwords safe' (for rejected replies that echo the ask)."""
    return " ".join(SECOND_PERSON.get(w, w) for w in text.split())


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill(template: str, topic: str, ask: str = "") -> str:
    return template.format(topic=topic, Topic=cap(topic), ask=ask, ask2=second_person(ask))


def picks(rng: random.Random, options: list[str], k: int) -> list[str]:
    return rng.sample(options, k)


def hh(turns: list[tuple[str, str]]) -> str:
    return "".join(f"\n\n{role}: {text}" for role, text in turns)


def sentences(text: str) -> int:
    return sum(text.count(p) for p in ".!?")


def good_reply(rng: random.Random, answers: list[str]) -> str:
    reply = rng.choice(answers)
    others = [a for a in answers if a != reply and sentences(reply) + sentences(a) <= 3]
    if others and rng.random() < 0.35:  # a fuller answer: two tips, still at most three sentences
        other = rng.choice(others)
        reply += " " + (other if rng.random() < 0.5 else "Also, " + other[:1].lower() + other[1:])
    if rng.random() < 0.4:
        reply = rng.choice(OPENERS) + reply
    if rng.random() < 0.25:
        reply += " " + rng.choice(CLOSERS)
    return reply


def loop_reply(rng: random.Random, topic: str, ask: str, answers: list[str]) -> str:
    style = rng.randrange(4)
    if style == 0:  # one clause of a real answer, looped
        clause = rng.choice(answers).split(".")[0].split(",")[0].split(":")[0].rstrip(".!")
        n = rng.randint(4, 6)
        sep = rng.choice([", ", " and ", ". "])
        if sep == ". ":
            return ". ".join([clause] * n) + "."
        return sep.join([clause] + [clause[:1].lower() + clause[1:]] * (n - 1)) + rng.choice([".", "..."])
    if style == 1:  # restating the question, over and over
        sentence = fill(rng.choice(LOOP_RESTATES), topic, ask)
        return " ".join([cap(sentence)] * rng.randint(3, 4))
    if style == 2:  # a filler phrase, looped
        phrase = fill(rng.choice(LOOP_PHRASES), topic, ask)
        sep = rng.choice([", ", " ", "... "])
        return cap(sep.join([phrase] * rng.randint(5, 9))) + "."
    # a whole first sentence of a real answer, repeated
    sentence = rng.choice(answers).split(". ")[0].rstrip(".") + "."
    return " ".join([sentence] * rng.randint(3, 4))


def bad_reply(rng: random.Random, kind: str, topic: str, ask: str, answers: list[str]) -> str:
    if kind == "dismissal":
        return " ".join(fill(s, topic) for s in picks(rng, DISMISSALS, rng.choice([1, 2, 2, 3])))
    if kind == "refusal":
        parts = [fill(rng.choice(REFUSALS), topic)]
        parts += picks(rng, REFUSAL_TAILS, rng.choice([0, 1, 1, 2]))
        return " ".join(parts)
    if kind == "ramble" and rng.random() < 0.5:  # confident advice on an unrelated subject
        others = [i for i, (t, _) in enumerate(TOPICS) if CATEGORY_OF[t] != CATEGORY_OF[topic]]
        _, other_tasks = TOPICS[rng.choice(others)]
        return good_reply(rng, rng.choice(other_tasks)[1])
    if kind == "ramble":  # small talk and trivia
        intro = fill(rng.choice(RAMBLE_INTROS), topic)
        body = picks(rng, RAMBLES, rng.choice([2, 2, 3]))
        if intro.endswith(", ") and not body[0].startswith("I "):
            body[0] = body[0][:1].lower() + body[0][1:]
        return intro + " ".join(body)
    if kind == "loop":
        reply = loop_reply(rng, topic, ask, answers)
        return (rng.choice(OPENERS[:5]) + reply) if rng.random() < 0.2 else reply
    if kind == "vague":
        reply = " ".join(cap(fill(s, topic)) for s in picks(rng, VAGUE, rng.choice([1, 2, 2, 3, 3, 4])))
        if rng.random() < 0.3:
            reply = rng.choice(OPENERS[:6]) + reply
        if rng.random() < 0.2:
            reply += " " + rng.choice(CLOSERS)
        return reply
    raise ValueError(kind)


def make_pair(rng: random.Random, topic_index: int, kind: str, multi_turn: bool) -> tuple[str, dict]:
    """(the shared conversation, {"chosen", "rejected"})."""
    topic, tasks = TOPICS[topic_index]
    order = rng.sample(range(len(tasks)), 2)
    ask, answers = tasks[order[-1]]
    turns: list[tuple[str, str]] = []
    if multi_turn:  # an earlier, polite exchange on the same topic
        first_ask, first_answers = tasks[order[0]]
        turns += [
            ("Human", rng.choice(QUESTIONS).format(ask=first_ask)),
            ("Assistant", good_reply(rng, first_answers)),
            ("Human", rng.choice(FOLLOW_UPS).format(ask=ask)),
        ]
    else:
        turns.append(("Human", rng.choice(QUESTIONS).format(ask=ask)))
    prompt = hh(turns)
    chosen = good_reply(rng, answers)
    rejected = bad_reply(rng, kind, topic, ask, answers)
    assert chosen != rejected
    row = {"chosen": prompt + hh([("Assistant", chosen)]), "rejected": prompt + hh([("Assistant", rejected)])}
    return prompt, row


def make_split(rng: random.Random, n: int, banned_prompts: set[str]) -> tuple[list[dict], list[str]]:
    """n pairs, failure kinds exactly even, a MULTI_TURN_SHARE of them multi-turn, topics balanced;
    no row repeats a dialogue, and no row's conversation is in banned_prompts."""
    assert n % len(KINDS) == 0
    kinds = KINDS * (n // len(KINDS))
    multi = [i < round(n * MULTI_TURN_SHARE) for i in range(n)]
    topics = [i % len(TOPICS) for i in range(n)]
    for seq in (kinds, multi, topics):
        rng.shuffle(seq)
    rows, prompts, seen = [], [], set()
    for kind, is_multi, topic_index in zip(kinds, multi, topics):
        for _ in range(1000):
            prompt, row = make_pair(rng, topic_index, kind, is_multi)
            if prompt not in banned_prompts and row["chosen"] not in seen and row["rejected"] not in seen:
                break
        else:
            raise RuntimeError("could not draw a fresh pair; add more variety")
        seen.update(row.values())
        rows.append(row)
        prompts.append(prompt)
    return rows, prompts


def words(text: str) -> int:
    return len(text.split())


def final_reply(dialogue: str) -> str:
    return dialogue.rsplit("\n\nAssistant: ", 1)[1]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def check(train: list[dict], test: list[dict], train_prompts: list[str], test_prompts: list[str], prompts):
    assert len(train) == N_TRAIN and len(test) == N_TEST and len(prompts) == N_PROMPTS
    for rows, conversations in ((train, train_prompts), (test, test_prompts)):
        for row, conversation in zip(rows, conversations):
            for text in row.values():
                assert text.startswith(conversation + "\n\nAssistant: "), text
                assert text.count("\n\nAssistant: ") == text.count("\n\nHuman: "), text
                assert words(text) < MAX_WORDS, (words(text), text)
            assert row["chosen"] != row["rejected"]
    # No dialogue text shared between train and test -- not even a conversation.
    train_texts = {t for r in train for t in r.values()}
    assert not any(t in train_texts for r in test for t in r.values()), "a test dialogue is in train"
    assert not set(train_prompts) & set(test_prompts), "a test conversation is in train"
    # The PPO prompts are held out from both.
    all_text = "\n".join(t for r in train + test for t in r.values()).lower()
    for p in prompts:
        assert p["prompt"].lower() not in all_text, p
    assert len({p["prompt"] for p in prompts}) == N_PROMPTS
    held = set(HELD_OUT_ASKS)
    assert not held & {ask for _, tasks in TOPICS for ask, _ in tasks}


def main() -> None:
    assert len(HELD_OUT_ASKS) == N_PROMPTS, len(HELD_OUT_ASKS)
    listed = [t for topics in CATEGORIES.values() for t in topics.split("|")]
    assert sorted(listed) == sorted(t for t, _ in TOPICS), "every topic needs exactly one category"
    rng = random.Random(SEED)
    train, train_prompts = make_split(rng, N_TRAIN, banned_prompts=set())
    test, test_prompts = make_split(rng, N_TEST, banned_prompts=set(train_prompts))
    prompts = [
        {"prompt": QUESTIONS[i % len(QUESTIONS)].format(ask=ask)} for i, ask in enumerate(HELD_OUT_ASKS)
    ]
    check(train, test, train_prompts, test_prompts, prompts)

    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test), ("prompts", prompts)):
        write_jsonl(OUT / f"{name}.jsonl", rows)
        digest = hashlib.sha256((OUT / f"{name}.jsonl").read_bytes()).hexdigest()[:16]
        print(f"{name}.jsonl: {len(rows)} rows, sha256 {digest}...")

    # Length alone must not be the rule: accuracy of "the longer (shorter) final reply wins".
    for name, rows in (("train", train), ("test", test)):
        lengths = [(words(final_reply(r["chosen"])), words(final_reply(r["rejected"]))) for r in rows]
        longer = sum(c > r for c, r in lengths) / len(rows)
        shorter = sum(c < r for c, r in lengths) / len(rows)
        print(f"{name}: 'longer reply wins' {longer:.3f}, 'shorter reply wins' {shorter:.3f} (in words)")


if __name__ == "__main__":
    main()
