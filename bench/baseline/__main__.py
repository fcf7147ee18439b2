from bench.baseline.app import main

main()
