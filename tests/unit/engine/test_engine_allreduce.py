"""The tensor-parallel all-reduce setting of the colocated engine (engine/allreduce.py): when it changes vLLM's
defaults, how, and that a user's own choice always wins."""

import pytest

from open_grpo.engine.allreduce import (
    BACKEND_ENV,
    allreduce_settings,
    apply,
    merge_engine_kwargs,
    multicast_unavailable,
)

OFF = {"compilation_config": {"pass_config": {"fuse_allreduce_rms": False}}}


@pytest.mark.parametrize(
    "environ",
    [{"TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}, {"NCCL_NVLS_ENABLE": "0"}, {"NVSHMEM_DISABLE_NVLS": "true"}],
)
def test_auto_turns_fusion_off_where_multicast_is_off(environ):
    env, engine, why = allreduce_settings(2, "auto", environ)
    assert env == {} and engine == OFF
    assert "multicast" in why and next(iter(environ)) in why


def test_auto_turns_fusion_off_where_the_gpu_has_no_multicast():
    env, engine, why = allreduce_settings(4, "auto", {}, device_supported=False)
    assert engine == OFF and "reports no multicast" in why


@pytest.mark.parametrize("device_supported", [True, None])
def test_auto_leaves_vllm_alone_where_multicast_may_work(device_supported):
    assert allreduce_settings(2, "auto", {"NCCL_NVLS_ENABLE": "1"}, device_supported) == ({}, {}, None)


def test_nothing_changes_at_tp1_or_when_asked_not_to():
    flags = {"TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
    assert allreduce_settings(1, "auto", flags) == ({}, {}, None)
    assert allreduce_settings(1, "off", flags) == ({}, {}, None)
    assert allreduce_settings(2, "vllm", flags) == ({}, {}, None)


def test_a_backend_the_user_set_is_kept_under_auto():
    environ = {"TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", BACKEND_ENV: "mnnvl"}
    assert allreduce_settings(2, "auto", environ) == ({}, {}, None)


def test_explicit_choices():
    assert allreduce_settings(2, "trtllm", {})[:2] == ({BACKEND_ENV: "trtllm"}, {})
    assert allreduce_settings(2, "off", {})[:2] == ({}, OFF)
    with pytest.raises(ValueError, match="vllm_allreduce_fusion must be one of"):
        allreduce_settings(2, "fast", {})


def test_multicast_flags_read_case_and_values():
    assert multicast_unavailable({"TORCH_SYMM_MEM_DISABLE_MULTICAST": "TRUE"}, None)
    assert multicast_unavailable({"NCCL_NVLS_ENABLE": "1", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "0"}, True) is None


def test_user_engine_kwargs_win_and_nested_dicts_merge():
    user = {"max_num_seqs": 64, "compilation_config": {"cudagraph_capture_sizes": [8, 16]}}
    merged = merge_engine_kwargs(user, OFF)
    assert merged == {"max_num_seqs": 64, "compilation_config": {"cudagraph_capture_sizes": [8, 16],
                                                                 "pass_config": {"fuse_allreduce_rms": False}}}  # fmt: skip
    mine = {"compilation_config": {"pass_config": {"fuse_allreduce_rms": True}}}
    assert merge_engine_kwargs(mine, OFF) == mine  # the user's explicit value stands
    assert merge_engine_kwargs({"compilation_config": 0}, OFF) == {"compilation_config": 0}


def test_apply_sets_the_environment_and_returns_engine_kwargs():
    environ = {}
    engine, why = apply(2, "trtllm", {"enforce_eager": False}, environ=environ)
    assert environ == {BACKEND_ENV: "trtllm"} and engine == {"enforce_eager": False} and "trtllm" in why
    environ = {"NCCL_NVLS_ENABLE": "0"}
    engine, why = apply(2, "auto", {}, environ=environ)
    assert engine == OFF and environ == {"NCCL_NVLS_ENABLE": "0"}


def test_auto_turns_fusion_off_when_vllms_world_spans_nodes():
    # colocated vLLM's world is every rank: on 2 nodes its FlashInfer backend choice changes, so auto turns it off
    env, engine, why = allreduce_settings(2, "auto", {}, device_supported=True, nodes=2)
    assert env == {} and engine == OFF and "spans 2 nodes" in why
    assert allreduce_settings(2, "auto", {}, device_supported=True, nodes=1) == ({}, {}, None)
    assert allreduce_settings(1, "auto", {}, nodes=4) == ({}, {}, None)  # no TP: no all-reduce to fuse


def test_trtllm_on_several_nodes_is_refused():
    with pytest.raises(ValueError, match="trtllm is FlashInfer's single-node backend"):
        allreduce_settings(2, "trtllm", {}, nodes=2)
    assert allreduce_settings(2, "off", {}, nodes=2)[1] == OFF


def test_apply_reads_the_node_count_from_the_launcher():
    environ = {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "NCCL_NVLS_ENABLE": "1"}
    engine, why = apply(2, "auto", {}, environ=environ)
    assert engine == OFF and "spans 2 nodes" in why
    environ = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", BACKEND_ENV: "mnnvl"}  # one node, the user's backend
    assert apply(2, "auto", {}, environ=environ) == ({}, None)
