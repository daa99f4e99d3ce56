// Precompiled header: the libtorch headers every torch-using translation unit needs.
// Kept to the C++ frontend pieces we use; TorchScript (<torch/script.h>) stays out (one file needs it).
#pragma once
#include <torch/types.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/normalization.h>
#include <torch/optim/adam.h>
#include <torch/autograd.h>
#include <ATen/Parallel.h>
