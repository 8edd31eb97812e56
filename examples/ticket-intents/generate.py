"""Generate the ticket-intents data: customer support tickets of an online electronics shop, by intent.

A ticket is composed from independent parts: a greeting, sometimes a sentence of background that
says nothing about the intent ("I've been a customer for years"), the request itself in one of
many wordings, sometimes a detail (an order number, a product, a date, an amount), a closing and
a signature; chat tickets are short and informal, some have typos or no capitals. The wordings
of each intent's request are split: about a quarter are held out for the test split, so a model
passes only if it understands requests worded in ways it never saw. Intents share vocabulary on
purpose (a double charge asks for money back, a damaged parcel mentions a return), as real
tickets do.

    python examples/ticket-intents/generate.py            # writes examples/ticket-intents/data/
    python examples/ticket-intents/generate.py --check    # fails if the committed files differ
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

REQUESTS: dict[str, list[str]] = {
    "refund_request": [
        "I would like a refund for the {product}", "please refund my order {order}",
        "can I get my money back for the {product}?", "I want to return the {product} and get a refund",
        "how do I get reimbursed for order {order}?", "I changed my mind about the {product}, I want my money back",
        "requesting a full refund for {order}", "the {product} is not what I expected, please refund me",
        "when will I receive the refund for the {product} I sent back?", "I returned the {product} two weeks ago and "
        "still have no refund", "please process a refund to my card", "I'd like to send the {product} back for a refund",
        "could you give me a refund instead of store credit?", "I was promised a refund, where is it?"],
    "cancel_subscription": [
        "please cancel my subscription", "I want to cancel my {plan} plan", "how do I stop my membership?",
        "cancel my account's monthly plan effective immediately", "I no longer need the {plan} subscription",
        "stop renewing my subscription please", "I'd like to end my {plan} membership at the end of this cycle",
        "how can I turn off auto-renewal?", "unsubscribe me from the {plan} service", "I want to terminate my plan",
        "don't charge me next month, I'm cancelling", "please close my premium membership",
        "can you make sure my subscription doesn't renew?"],
    "shipping_delay": [
        "where is my order {order}?", "my package still hasn't arrived", "the {product} was supposed to arrive "
        "{days} days ago", "tracking has said 'in transit' for a week", "my delivery is late",
        "when will order {order} be delivered?", "the courier never showed up with my {product}",
        "it's been {days} days and nothing has shipped", "the estimated delivery date passed and no parcel",
        "my order is stuck at the depot", "has my {product} even been dispatched?",
        "the tracking number you sent doesn't work and my parcel is missing", "still waiting for my delivery"],
    "damaged_item": [
        "the {product} arrived broken", "my {product} came with a cracked screen", "the box was crushed and the "
        "{product} inside is damaged", "the {product} was scratched when I unpacked it", "there's a dent in the "
        "{product} I received", "the item arrived smashed", "the {product} is shattered, the packaging was terrible",
        "the parcel was wet and the {product} is ruined", "received the {product} with a broken hinge",
        "one of the parts of the {product} snapped in transit", "my order {order} arrived in pieces",
        "the {product} has water damage out of the box", "the glass of the {product} was cracked on arrival"],
    "wrong_item": [
        "I received the wrong item", "I ordered the {product} but got something else",
        "you sent me a {product2} instead of a {product}", "the colour is wrong, I ordered black",
        "order {order} contains someone else's items", "this is not the model I ordered",
        "the box had a {product2} in it, I paid for a {product}", "wrong size delivered",
        "I got two chargers and no {product}", "the item in the parcel doesn't match my order",
        "you shipped the old version of the {product}, not the new one", "this isn't what I bought"],
    "login_problem": [
        "I can't log in to my account", "I forgot my password", "the password reset email never arrives",
        "my account is locked after too many attempts", "it says my password is incorrect but it's right",
        "the two-factor code isn't working", "I can't sign in on the app", "reset my password please",
        "my login keeps failing", "I'm locked out of my account", "the verification code expired and I can't get "
        "a new one", "I changed my email and now I can't access my account", "the sign-in page just reloads"],
    "billing_error": [
        "I was charged twice for order {order}", "there's a charge of {amount} I don't recognise",
        "you billed me {amount} but the price was lower", "my card was charged after I cancelled",
        "the invoice amount is wrong", "I see a duplicate payment on my statement", "I was overcharged by {amount}",
        "the discount code wasn't applied but I was charged full price", "why was I billed {amount} this month?",
        "the tax on my bill is wrong", "a payment went through twice and I need the extra one reversed",
        "I was charged for a {plan} plan I never signed up for", "my bank shows an unexpected debit from you"],
    "change_address": [
        "I need to change my delivery address", "can you ship order {order} to a different address?",
        "I moved, please update my address", "please send my {product} to my office instead",
        "wrong postcode on my order, can you fix it?", "how do I update the shipping address?",
        "I typed my street name wrong", "change the delivery address before it ships",
        "can I redirect my parcel to my neighbour's house?", "update my billing and shipping address",
        "my apartment number is missing from the address", "deliver order {order} to my new home please"],
    "invoice_request": [
        "can you send me an invoice for order {order}?", "I need a VAT invoice for my company",
        "please email me the receipt for the {product}", "I need a copy of my invoice for accounting",
        "where can I download my invoices?", "please put my company name on the invoice",
        "I need a receipt for warranty purposes", "could you resend the invoice for {order}?",
        "the invoice I got has no tax number, please send a proper one", "I need all my invoices from last year",
        "my employer needs an itemised receipt", "send a pro forma invoice please"],
    "product_question": [
        "does the {product} work with {platform}?", "what's the battery life of the {product}?",
        "is the {product} waterproof?", "does the {product} come with a charger?",
        "what's the difference between the {product} and the {product2}?", "is the {product} in stock?",
        "how much storage does the {product} have?", "will the {product} fit in a small backpack?",
        "does the {product} support bluetooth 5?", "what warranty comes with the {product}?",
        "can I use the {product} abroad?", "is there a newer model of the {product} coming?",
        "what colours does the {product} come in?"],
    "technical_issue": [
        "my {product} won't turn on", "the {product} keeps restarting", "the app crashes when I open it",
        "my {product} won't connect to wifi", "the {product} overheats after a few minutes",
        "the screen of my {product} flickers", "bluetooth pairing fails on the {product}",
        "the {product} stopped charging", "the update bricked my {product}", "no sound from the {product}",
        "the touchscreen of the {product} doesn't respond", "the {product} disconnects every few minutes",
        "my {product} freezes on the logo screen"],
    "upgrade_plan": [
        "I want to upgrade to the {plan} plan", "how do I switch to a higher tier?", "can I move from basic to "
        "{plan}?", "I'd like more storage on my plan", "upgrade my membership please",
        "what does it cost to go to {plan}?", "I need the business plan for my team",
        "can I change my plan to annual billing with more features?", "switch me to the {plan} tier",
        "I want the plan with extended warranty included", "how can I add more devices to my plan?",
        "please upgrade my account to {plan} today"],
}

PRODUCTS = ["laptop", "phone", "tablet", "smartwatch", "headphones", "wireless earbuds", "router", "monitor",
            "keyboard", "mouse", "webcam", "smart speaker", "e-reader", "camera", "power bank", "charger",
            "TV", "printer", "game console", "fitness tracker", "drone", "projector", "SSD", "graphics card"]
PLANS = ["Plus", "Premium", "Pro", "Family", "Business", "Basic", "Care+", "Unlimited"]
PLATFORMS = ["Windows", "macOS", "Linux", "Android", "iPhone", "my car", "a PS5", "Alexa"]
NAMES = ["Anna", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Grace", "Hiro", "Ines", "Jonas", "Karin", "Luis",
         "Maya", "Noah", "Olga", "Priya", "Quentin", "Rosa", "Sam", "Tomasz", "Uma", "Viktor", "Wen", "Yusuf"]
GREETINGS = ["Hi,", "Hello,", "Hello team,", "Dear support,", "Good morning,", "Hey,", "Hi there,", "To whom it may "
             "concern,", "Good afternoon,", "Hiya,", "", "", ""]
BACKGROUND = ["I've been a customer for years.", "This is my second message about this.", "I ordered last week.",
              "I bought it as a gift.", "I use your shop all the time.", "I'm writing from my work email.",
              "My order number is {order}.", "I bought the {product} on {date}.", "I'm quite frustrated.",
              "Sorry to bother you.", "I tried the help page first.", "I'm travelling at the moment.",
              "It was paid with a credit card.", "I have the premium membership."]
DETAILS = ["Order {order}.", "It was the {product}.", "This happened on {date}.", "The total was {amount}.",
           "I've attached a photo.", "My account email is {email}.", "Reference: {order}.",
           "I already called once.", "Please reply by email.", "The courier was {courier}."]
CLOSINGS = ["Thanks.", "Thank you!", "Thanks in advance.", "Please help.", "Regards, {name}", "Best, {name}",
            "Cheers, {name}", "Please sort this out asap.", "Looking forward to your reply.", "{name}", "", "", ""]
COURIERS = ["DHL", "UPS", "FedEx", "the post", "DPD", "a local courier"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
CHANNELS = ["email", "chat", "web form"]
TEST_SHARE = 25        # percent of each intent's request wordings held out for the test split
TRAIN_PER_INTENT = 75
TEST_PER_INTENT = 25
TYPO_RATE = 0.2


def held_out(intent: str, request: str) -> bool:
    """Whether this request wording belongs to the test split (stable hash of intent and wording)."""
    return int(hashlib.sha256(f"{intent}|{request}".encode()).hexdigest(), 16) % 100 < TEST_SHARE


def slots(rng: random.Random) -> dict[str, str]:
    product, product2 = rng.sample(PRODUCTS, 2)
    name = rng.choice(NAMES)
    return {"product": product, "product2": product2, "plan": rng.choice(PLANS), "platform": rng.choice(PLATFORMS),
            "order": rng.choice(["#", "", "No. "]) + str(rng.randrange(100000, 999999)),
            "days": str(rng.randrange(3, 21)), "amount": rng.choice(["$", "€", "£"]) + f"{rng.randrange(5, 900)}."
            f"{rng.randrange(0, 100):02d}", "date": f"{rng.randrange(1, 29)} {rng.choice(MONTHS)}",
            "name": name, "email": f"{name.lower()}{rng.randrange(1, 99)}@example.com", "courier": rng.choice(COURIERS)}


def typo(text: str, rng: random.Random) -> str:
    """One realistic slip in a longer word: swap, drop or double a letter."""
    parts = text.split(" ")
    words = [i for i, w in enumerate(parts) if len(w) > 4 and w.isalpha()]
    if not words:
        return text
    i = rng.choice(words)
    w, j = parts[i], rng.randrange(1, len(parts[i]) - 2)
    parts[i] = rng.choice([w[:j] + w[j + 1] + w[j] + w[j + 2:], w[:j] + w[j + 1:], w[:j] + w[j] + w[j:]])
    return " ".join(parts)


def capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def compose(request: str, channel: str, rng: random.Random) -> str:
    """One ticket around the request; chat tickets are short, lower-case more often and unsigned."""
    s = slots(rng)
    core = capitalise(request.format(**s))
    if not core.endswith(("?", ".", "!")):
        core += rng.choice([".", ".", "!", ""])
    if channel == "chat":
        parts = [rng.choice(["hi", "hello", "hey", ""]), core]
        if rng.random() < 0.3:
            parts.append(rng.choice(DETAILS).format(**s))
        text = " ".join(p for p in parts if p)
        text = text.lower() if rng.random() < 0.5 else text
    else:
        parts = [rng.choice(GREETINGS)]
        if rng.random() < 0.5:
            parts.append(rng.choice(BACKGROUND).format(**s))
        parts.append(core)
        parts += [d.format(**s) for d in rng.sample(DETAILS, rng.choice([0, 0, 1, 2]))]
        parts.append(rng.choice(CLOSINGS).format(**s))
        text = " ".join(p for p in parts if p)
    return typo(text, rng) if rng.random() < TYPO_RATE else text


def generate(seed: int = 0) -> dict[str, list[dict]]:
    """Return {"train": [...], "test": [...]} tickets; the same seed gives the same tickets."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for intent, requests in REQUESTS.items():
        for split, count in (("train", TRAIN_PER_INTENT), ("test", TEST_PER_INTENT)):
            pool = [r for r in requests if held_out(intent, r) == (split == "test")]
            for k in range(count):
                channel = rng.choice(CHANNELS)
                out[split].append({"text": compose(pool[k % len(pool)], channel, rng), "intent": intent,
                                   "channel": channel})
    rng.shuffle(out["train"])
    test_texts = {r["text"] for r in out["test"]}
    if test_texts & {r["text"] for r in out["train"]}:
        raise AssertionError("a test ticket also occurs in train")
    return out


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args(argv)
    for split, records in generate().items():
        path = args.out / f"{split}.jsonl"
        text = render(records)
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} differs from what generate.py writes", file=sys.stderr)
                return 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"{path}: {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
