"""babelmr's benchmarks: end-to-end queries against hand-written code and peers, and the engine's
building blocks against hand-written pandas/fastparquet code and raw pyarrow.

    python -m benchmarks run --sf 1,10          # everything; writes docs/benchmarks.md and its plots
    python -m benchmarks run --smoke            # SF 0.01, one repetition: what the test suite runs
"""
