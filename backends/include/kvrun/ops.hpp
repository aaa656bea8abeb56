// Temporary forwarder while the tree is reorganised: the Ops interface lives in core.
#pragma once
#include "../../../core/include/kvrun/ops.hpp"
