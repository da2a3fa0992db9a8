#!/usr/bin/env bash
# Copyright (c) OpenMMLab. All rights reserved. Adapted from MMPose 1.3.2
# tools/dist_train.sh: torchrun instead of the deprecated torch.distributed.launch.
# Usage: tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
# On a machine without a GPU the processes use the gloo backend on the CPU.
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
$PYTHON -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    $(dirname "$0")/train.py \
    $CONFIG \
    --launcher pytorch ${@:3}
