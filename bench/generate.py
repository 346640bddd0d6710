"""Seeded generator of realistic catalogs for the benchmarks.

One row per SKU, one price / warranty / comment column per country (the default mapping
profile), grades in every vocabulary sellers use, and a second version of the catalog with a
chosen churn (prices and stocks changed, rows removed, rows added).
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from stdnum import ean

COUNTRIES = ("fr", "de", "es", "it", "be", "at", "nl", "pt", "ie", "gr", "sk", "se", "gb")
LOCALES = {"fr": "fr-fr", "de": "de-de", "es": "es-es", "it": "it-it", "be": "fr-be",
           "at": "de-at", "nl": "nl-nl", "pt": "pt-pt", "ie": "en-ie", "gr": "el-gr",
           "sk": "sk-sk", "se": "sv-se", "gb": "en-gb"}
GRADES = ("EXCELLENT", "VERY_GOOD", "GOOD", "FAIR", "Shiny", "Gold", "Silver", "Bronze",
          "Très bon état", "Bon état", "1", "2")
MODELS = ("iPhone 13 128GB", "iPhone 12 64GB", "Galaxy S21 128GB", "Pixel 7 128GB",
          "iPad Air 5 64GB", "MacBook Air M1 256GB", "Switch OLED", "ThinkPad X1 Carbon G9")


def header(countries: Sequence[str]) -> list[str]:
    cells = ["sku", "product_id", "ean", "grade", "stock", "safety_stock", "max_quantity"]
    for c in countries:
        cells += [f"price_{c}", f"warranty_{c}", f"comment_{c}"]
    return cells


def row(n: int, countries: Sequence[str], rnd: random.Random) -> list[str]:
    base = f"{300000000000 + n * 7:012d}"
    model = MODELS[n % len(MODELS)]
    cells = [f"SKU-{n:08d}", "", base + ean.calc_check_digit(base),
             GRADES[n % len(GRADES)], str(rnd.randint(0, 40)), str(n % 3), ""]
    for c in countries:
        price = rnd.randint(5000, 150000)
        cells += [f"{price // 100}.{price % 100:02d}", "12", f"{model} refurbished ({c})"]
    return cells


def churn(rows: Iterator[list[str]], share: float, rnd: random.Random, countries: Sequence[str],
          next_n: int) -> Iterator[list[str]]:
    """A changed copy: of the `share` of rows touched, 40% get a new price, 40% a new stock,
    10% are removed, and as many new SKUs are added."""
    added = 0
    for cells in rows:
        if rnd.random() >= share:
            yield cells
            continue
        what = rnd.random()
        if what < 0.4:
            i = 7 + 3 * rnd.randrange(len(countries))
            cells = [*cells]
            cells[i] = f"{rnd.randint(50, 1500)}.{rnd.randint(0, 99):02d}"
            yield cells
        elif what < 0.8:
            yield [*cells[:4], str(rnd.randint(0, 40)), *cells[5:]]
        elif what < 0.9:
            continue
        else:
            yield cells
            added += 1
            yield row(next_n + added, countries, rnd)


def write(path: Path, rows: Iterator[list[str]], countries: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";", lineterminator="\n")
        writer.writerow(header(countries))
        writer.writerows(rows)


def generate(folder: Path, skus: int, stores: int, churn_share: float, seed: int = 42
             ) -> tuple[Path, Path]:
    countries = COUNTRIES[:stores]
    folder.mkdir(parents=True, exist_ok=True)
    first, second = folder / "catalog-v1.csv", folder / "catalog-v2.csv"
    rnd = random.Random(seed)
    write(first, (row(n, countries, rnd) for n in range(skus)), countries)
    with first.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=";")
        next(reader)
        write(second, churn(reader, churn_share, random.Random(seed + 1), countries, skus),
              countries)
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--skus", type=int, default=200_000)
    parser.add_argument("--stores", type=int, default=5)
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    for path in generate(args.folder, args.skus, args.stores, args.churn, args.seed):
        print(path)


if __name__ == "__main__":
    main()
