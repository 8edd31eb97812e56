"""Generate the chat-smollm2 data: support chats of Kettle & Crumb, a (fictional) kitchenware webshop.

Each conversation is a system message and two or three exchanges between a customer and Mira, the
shop's assistant: a first question (shipping, returns, warranty, payment, changing an order, gift
cards, opening hours, or a product: capacity, material, dishwasher, induction, price, colours), often
a follow-up on the same subject, and sometimes a thank-you. Customers word their questions in many
ways, some in lower case or with a typo; Mira's answers state the shop's policies and product facts
(the same facts every time, so that a model can learn them) in a few wordings. Written in ShareGPT
format ({"conversations": [{"from": "system" | "human" | "gpt", "value": ...}]}).

    python examples/chat-smollm2/generate.py            # writes examples/chat-smollm2/conversations.jsonl
    python examples/chat-smollm2/generate.py --check    # fails if the committed file differs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COUNT = 160
SYSTEM = ("You are Mira, the customer support assistant of Kettle & Crumb, an online kitchenware shop. "
          "Answer briefly and politely, using the shop's policies.")

# subject -> (customer wordings, Mira's answers, follow-ups as (customer wordings, Mira's answers))
POLICIES: dict[str, tuple[list[str], list[str], list[tuple[list[str], list[str]]]]] = {
    "shipping": (
        ["How long does delivery take?", "when will my order arrive if I order today?",
         "How fast do you ship?", "What are your delivery times?", "how long is shipping to Germany?"],
        ["Standard delivery takes 3 to 5 business days and costs €4.95; it is free on orders over €50.",
         "We deliver in 3 to 5 business days with standard shipping (€4.95, free over €50)."],
        [(["Is there anything faster?", "can I get it tomorrow?", "Do you have express shipping?"],
          ["Yes: express delivery arrives the next business day for €9.95 if you order before 14:00."]),
         (["Do you ship to the UK?", "do you deliver outside the EU?"],
          ["We ship to every EU country and to the UK. UK orders may be charged customs duties on arrival."])]),
    "returns": (
        ["Can I return something I bought?", "What's your return policy?", "I want to send back a pan, how?",
         "how do returns work", "Is it possible to return an item I don't like?"],
        ["You can return unused items in their original packaging within 30 days of delivery. Print a free "
         "return label in your account under Orders → Return an item.",
         "Returns are accepted within 30 days of delivery, unused and in the original packaging; the return "
         "label is free from Orders → Return an item in your account."],
        [(["When do I get my money back?", "how long does the refund take?", "When will I be refunded?"],
          ["The refund reaches your original payment method within 5 business days after the parcel arrives "
           "at our warehouse."]),
         (["What if I already threw away the box?", "I opened it and used it once, can I still return it?"],
          ["I'm sorry, only unused items in their original packaging can be returned. If the item is faulty, "
           "our warranty covers it."])]),
    "warranty": (
        ["My kettle stopped working, what can I do?", "Is there a warranty on your appliances?",
         "the toaster I bought broke after 8 months", "Does the cast iron pan have a guarantee?"],
        ["All electrical appliances have a 2-year warranty and cast-iron cookware a 5-year warranty. Send us "
         "your order number and a photo through the support form and we will repair or replace it.",
         "You're covered: appliances have a 2-year warranty, cast iron 5 years. Please send your order number "
         "and a photo of the problem via the support form."],
        [(["Do I have to pay for shipping it back?", "who pays the postage for a warranty claim?"],
          ["No, warranty returns are free: we email you a prepaid label once we have your claim."]),
         (["How long does a repair take?", "when will I get the replacement?"],
          ["Most claims are settled within 10 business days of the item reaching us."])]),
    "payment": (
        ["Which payment methods do you accept?", "can I pay with PayPal?", "Do you take credit cards?",
         "how can I pay"],
        ["You can pay by card (Visa, Mastercard, American Express), PayPal, Klarna or a Kettle & Crumb gift card.",
         "We accept Visa, Mastercard, American Express, PayPal, Klarna and our own gift cards."],
        [(["Can I pay later?", "Does Klarna let me pay in 30 days?", "is there a buy now pay later option?"],
          ["Yes, with Klarna you can pay within 30 days of delivery at no extra cost."]),
         (["Is it safe to enter my card here?", "do you store my card details?"],
          ["Payments are processed by our payment provider over an encrypted connection; we never store your "
           "card number."])]),
    "order_change": (
        ["I made a mistake in my order, can I change it?", "How do I cancel my order?",
         "can i change the delivery address of my order?", "I ordered the wrong colour, help"],
        ["Within 1 hour of ordering you can change or cancel the order yourself in your account under Orders. "
         "After that, please contact us and we will try before it ships.",
         "You can edit or cancel an order in your account for 1 hour after placing it; later than that, write "
         "to us and we'll do our best before it leaves the warehouse."],
        [(["It has already shipped, what now?", "what if it's already on the way?"],
          ["Once shipped it can't be cancelled, but you can return it within 30 days of delivery for a refund."]),
         (["Can I add an item to my order?", "can I add something to the same parcel?"],
          ["Items can't be added to an order once it is placed; please place a second order (orders over €50 "
           "ship free)."])]),
    "gift_cards": (
        ["Do you sell gift cards?", "how long is a gift card valid?", "Can I buy a voucher for a friend?"],
        ["Yes, digital gift cards from €10 to €200 are emailed instantly and are valid for 3 years.",
         "We sell digital gift cards of €10 to €200; they arrive by email right away and stay valid for 3 years."],
        [(["Can I exchange a gift card for cash?", "can the voucher be refunded?"],
          ["Gift cards can't be exchanged for cash, but any remaining balance stays on the card."]),
         (["Can I use two gift cards at once?", "can i combine a gift card with paypal?"],
          ["Yes, you can combine up to two gift cards and pay any rest by card, PayPal or Klarna."])]),
    "hours": (
        ["When is your support open?", "what are your opening hours?", "Can I call you on Sunday?"],
        ["Our support chat and phone line are open Monday to Friday 8:00–20:00 and Saturday 10:00–16:00.",
         "You can reach us Monday to Friday from 8:00 to 20:00 and on Saturday from 10:00 to 16:00."],
        [(["Do you have a shop I can visit?", "is there a physical store?"],
          ["We are an online shop only, but you can pick up orders at our warehouse in Tilburg on weekdays."])]),
}

# product -> facts; a question about a product names it one of its ways
PRODUCTS: dict[str, dict[str, str]] = {
    "Aurora electric kettle": {"capacity": "1.7 litres", "material": "brushed stainless steel",
                               "price": "€49", "colours": "silver, black and sage green",
                               "dishwasher": "No, the kettle itself isn't dishwasher safe; only its limescale "
                                             "filter is."},
    "Fjord cast-iron casserole": {"capacity": "4.5 litres", "material": "enamelled cast iron", "price": "€119",
                                  "colours": "red, navy and cream", "induction": "Yes, it works on every hob, "
                                                                                "induction included.",
                                  "dishwasher": "It is dishwasher safe, but washing by hand keeps the enamel "
                                                "glossy longer."},
    "Pico milk frother": {"capacity": "240 ml", "material": "stainless steel with a non-stick inside",
                          "price": "€39", "colours": "white and black",
                          "dishwasher": "No, please wipe it clean; it has electrical parts."},
    "Terra stoneware dinner set": {"capacity": "16 pieces for 4 people", "material": "glazed stoneware",
                                   "price": "€89", "colours": "sand and slate grey",
                                   "dishwasher": "Yes, and it is microwave safe too."},
    "Brio frying pan 28 cm": {"capacity": "28 cm across", "material": "aluminium with a ceramic non-stick coating",
                              "price": "€45", "colours": "graphite",
                              "induction": "Yes, the base works on induction.",
                              "dishwasher": "Yes, though hand washing keeps the coating longer."},
    "Nord chef's knife": {"capacity": "a 20 cm blade", "material": "Japanese VG10 steel with an oak handle",
                          "price": "€79", "colours": "natural oak",
                          "dishwasher": "No, please wash it by hand and dry it right away."},
    "Sola toaster": {"capacity": "2 wide slots", "material": "matte powder-coated steel", "price": "€59",
                     "colours": "cream, black and terracotta",
                     "dishwasher": "No, but the crumb tray slides out for cleaning."},
    "Alba glass teapot": {"capacity": "1 litre", "material": "borosilicate glass with a steel infuser",
                          "price": "€29", "colours": "clear",
                          "dishwasher": "Yes, the pot and the infuser are dishwasher safe.",
                          "induction": "No, it is for brewing, not for the hob."},
}

QUESTIONS = {
    "capacity": ["How big is the {p}?", "what's the capacity of the {p}?", "How much does the {p} hold?"],
    "material": ["What is the {p} made of?", "which material is the {p}?", "is the {p} made of plastic?"],
    "price": ["How much is the {p}?", "what does the {p} cost?", "Price of the {p}?"],
    "colours": ["Which colours does the {p} come in?", "does the {p} come in other colours?",
                "what colors is the {p} available in"],
    "dishwasher": ["Can the {p} go in the dishwasher?", "is the {p} dishwasher safe?"],
    "induction": ["Does the {p} work on induction?", "can I use the {p} on an induction hob?"],
}
ANSWERS = {
    "capacity": ["The {p} has {v}.", "It's {v}."], "material": ["The {p} is made of {v}.", "It's {v}."],
    "price": ["The {p} costs {v}.", "It's {v}, with free shipping since it's over €50."],
    "colours": ["The {p} comes in {v}.", "You can choose {v}."],
}
THANKS = ["Thanks!", "thank you", "Great, thanks a lot.", "ok thanks", "Perfect, that's all I needed."]
WELCOME = ["You're welcome! Happy cooking.", "Glad I could help. Enjoy your day!",
           "You're welcome. Let me know if there's anything else."]


def typo(text: str, rng: random.Random) -> str:
    """One swapped pair of adjacent letters, as a hurried customer types."""
    spots = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def customer(text: str, rng: random.Random) -> str:
    if rng.random() < 0.15:
        text = typo(text, rng)
    return text.lower() if rng.random() < 0.2 else text


def product_exchange(name: str, fact: str, rng: random.Random) -> tuple[str, str]:
    value = PRODUCTS[name][fact]
    question = rng.choice(QUESTIONS[fact]).format(p=name)
    answer = value if fact in ("dishwasher", "induction") else rng.choice(ANSWERS[fact]).format(p=name, v=value)
    if fact == "price" and int(value.strip("€")) <= 50:
        answer = f"The {name} costs {value}."
    return question, answer


def conversation(rng: random.Random) -> list[dict]:
    """A system message, then two or three exchanges on one subject."""
    exchanges: list[tuple[str, str]] = []
    if rng.random() < 0.45:
        name = rng.choice(sorted(PRODUCTS))
        facts = rng.sample(sorted(PRODUCTS[name]), 2)
        exchanges.append(product_exchange(name, facts[0], rng))
        if rng.random() < 0.7:
            q, a = product_exchange(name, facts[1], rng)
            exchanges.append((q.replace(f"the {name}", "it"), a))
    else:
        openers, answers, follow_ups = POLICIES[rng.choice(sorted(POLICIES))]
        exchanges.append((rng.choice(openers), rng.choice(answers)))
        if rng.random() < 0.75:
            questions, replies = rng.choice(follow_ups)
            exchanges.append((rng.choice(questions), rng.choice(replies)))
    if len(exchanges) < 2 or rng.random() < 0.3:
        exchanges.append((rng.choice(THANKS), rng.choice(WELCOME)))
    turns = [{"from": "system", "value": SYSTEM}]
    for question, answer in exchanges:
        turns += [{"from": "human", "value": customer(question, rng)}, {"from": "gpt", "value": answer}]
    return turns


def render() -> str:
    """The JSONL text of every conversation (seeded: the same on every run)."""
    rng = random.Random(0)
    return "".join(json.dumps({"id": i, "conversations": conversation(rng)}, ensure_ascii=False) + "\n"
                   for i in range(COUNT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args()
    path = HERE / "conversations.jsonl"
    text = render()
    if args.check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            sys.exit(f"{path} differs from what generate.py writes; run it again")
        print(f"{path}: up to date ({COUNT} conversations)")
        return
    path.write_text(text, encoding="utf-8")
    print(f"wrote {COUNT} conversations to {path}")


if __name__ == "__main__":
    main()
