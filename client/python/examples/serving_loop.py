"""The serving-stack loop: rank candidates, show the top one, send the user's feedback.

A simulated user who weighs the reward models by a hidden preference picks between the top
two candidates each turn. Run against a live tailord:
    scripts/python.sh client/python/examples/serving_loop.py localhost:50051 [turns]
"""
import random
import sys

sys.path.insert(0, __file__.rsplit("/examples/", 1)[0])
from tailor_client import TailorClient  # noqa: E402


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "localhost:50051"
    turns = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    rng = random.Random(7)
    with TailorClient(target) as tailor:
        schema = tailor.server_info().schema.features
        hidden = [1.0 if i == 3 else 0.05 for i in range(len(schema))]  # loves reward model 3
        picks_of_favourite = []
        for turn in range(turns):
            # The serving stack's candidates: raw reward-model scores around the schema means.
            candidates = [(f"t{turn}-r{r}", [f.mean + f.sd * rng.gauss(0, 1) for f in schema])
                          for r in range(8)]
            ranked = tailor.rank("demo-user", candidates).ranked
            by_id = dict(candidates)
            utility = {cid: sum(w * (x - f.mean) / f.sd for w, x, f in zip(hidden, feats, schema))
                       for cid, feats in candidates}
            picks_of_favourite.append(ranked[0].id == max(utility, key=utility.get))
            first, second = ranked[0].id, ranked[1].id
            chosen, rejected = (first, second) if utility[first] >= utility[second] else (second, first)
            ack = tailor.feedback(f"demo-{turn}", "demo-user", (chosen, by_id[chosen]),
                                  (rejected, by_id[rejected]))
            print(f"turn {turn:2d}: showed {first}, user preferred {chosen}; "
                  f"model had P(chosen)={ack.predicted_chosen_probability:.2f}")
        early = sum(picks_of_favourite[:10]) / 10
        late = sum(picks_of_favourite[-10:]) / 10
        print(f"top pick was the user's favourite in {early:.0%} of the first 10 turns, "
              f"{late:.0%} of the last 10")


if __name__ == "__main__":
    main()
