// kvrun bench — the throughput and memory sweep (one row per (batch, new-tokens) pair).
// Declared alone so apps/main.cpp can include it without the helpers it uses (cli_common.hpp).
#pragma once

namespace kvrun {

// `kvrun bench -c CONFIG --batch 1,4,16 --prompt-tokens 32 --new-tokens 1024 [--json F] [--csv F]
// [--plot F.png]`: argv as main() got it (argv[1] == "bench"). Returns the exit code; errors that
// end the whole sweep are thrown as Error (main turns them into messages and exit codes).
int cmd_bench(int argc, char** argv);

}  // namespace kvrun
