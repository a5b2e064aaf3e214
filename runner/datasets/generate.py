#!/usr/bin/python3
"""Generates the small benchmark datasets shipped with evalctl-runner.

Deterministic: a fixed seed per dataset, so running it again rewrites identical files.

    /usr/bin/python3 runner/datasets/generate.py            # writes next to this script
    /usr/bin/python3 runner/datasets/generate.py --check    # exits 1 if the files are stale

Datasets (JSON Lines, one item per line):
  arithmetic.jsonl       exact match, 200 items: + - × ÷ on small integers
  unit_conversion.jsonl  exact match, 150 items: km/m/cm, kg/g, hours/minutes, °C/°F; integer answers
  arithmetic_mc.jsonl    multiple choice (4 options, answer = 0-based index), 150 items

Every answer is computable from the question, so the stand-in model server (evalctl-standin) can
know it. They are for demos and tests of the machinery, not for measuring a model.
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def arithmetic(rng):
    items, seen = [], set()
    ops = ["+", "-", "×", "÷"]
    per_op = 50
    for op in ops:
        count = 0
        while count < per_op:
            if op == "+":
                a, b = rng.randint(1, 99), rng.randint(1, 99)
                result = a + b
            elif op == "-":
                a, b = rng.randint(1, 99), rng.randint(1, 99)
                result = a - b
            elif op == "×":
                a, b = rng.randint(2, 20), rng.randint(2, 20)
                result = a * b
            else:
                b, q = rng.randint(2, 12), rng.randint(1, 20)
                a, result = b * q, q
            question = f"What is {a} {op} {b}?"
            if question in seen:
                continue
            seen.add(question)
            count += 1
            items.append({"question": question, "answer": str(result)})
    rng.shuffle(items)
    return [dict(id=f"arithmetic-{i:04d}", **item) for i, item in enumerate(items)]


def unit_conversion(rng):
    def km_m():
        n = rng.randint(1, 50)
        return f"How many meters are in {n} kilometers?", n * 1000

    def m_km():
        n = rng.randint(1, 50)
        return f"How many kilometers are {n * 1000} meters?", n

    def m_cm():
        n = rng.randint(1, 99)
        return f"How many centimeters are in {n} meters?", n * 100

    def kg_g():
        n = rng.randint(1, 60)
        return f"How many grams are in {n} kilograms?", n * 1000

    def g_kg():
        n = rng.randint(1, 60)
        return f"How many kilograms are {n * 1000} grams?", n

    def h_min():
        n = rng.randint(1, 48)
        return f"How many minutes are in {n} hours?", n * 60

    def min_h():
        n = rng.randint(1, 48)
        return f"How many hours are {n * 60} minutes?", n

    def c_f():
        c = 5 * rng.randint(-12, 24)
        return f"What is {c} °C in degrees Fahrenheit?", c * 9 // 5 + 32

    def f_c():
        k = rng.randint(-8, 23)
        return f"What is {32 + 9 * k} °F in degrees Celsius?", 5 * k

    kinds = [km_m, m_km, m_cm, kg_g, g_kg, h_min, min_h, c_f, f_c]
    items, seen = [], set()
    while len(items) < 150:
        question, answer = kinds[len(items) % len(kinds)]()
        if question in seen:
            continue
        seen.add(question)
        items.append({"question": question, "answer": str(answer)})
    rng.shuffle(items)
    return [dict(id=f"unit_conversion-{i:04d}", **item) for i, item in enumerate(items)]


def arithmetic_mc(rng):
    items, seen = [], set()
    ops = ["+", "-", "×"]
    while len(items) < 150:
        op = ops[len(items) % len(ops)]
        if op == "+":
            a, b = rng.randint(10, 199), rng.randint(10, 199)
            result = a + b
        elif op == "-":
            a, b = rng.randint(50, 199), rng.randint(1, 49)
            result = a - b
        else:
            a, b = rng.randint(3, 25), rng.randint(3, 25)
            result = a * b
        question = f"Which of the following equals {a} {op} {b}?"
        if question in seen:
            continue
        seen.add(question)
        options = {result}
        while len(options) < 4:
            candidate = result + rng.choice([-10, -2, -1, 1, 2, 10, a, -b])
            if candidate > 0:
                options.add(candidate)
        choices = sorted(options)
        rng.shuffle(choices)
        items.append({"question": question, "choices": [str(c) for c in choices],
                      "answer": choices.index(result)})
    return [dict(id=f"arithmetic_mc-{i:04d}", **item) for i, item in enumerate(items)]


DATASETS = {
    "arithmetic.jsonl": (arithmetic, 1001),
    "unit_conversion.jsonl": (unit_conversion, 1002),
    "arithmetic_mc.jsonl": (arithmetic_mc, 1003),
}


def render(items):
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for name, (make, seed) in DATASETS.items():
        text = render(make(random.Random(seed)))
        path = os.path.join(HERE, name)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path} ({text.count(chr(10))} items)")
    if stale:
        print("stale: " + ", ".join(stale) + " (run generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
