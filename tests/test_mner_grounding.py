"""FAOA grounding: anchor assignment, box encode/decode round trip, zero regression loss for a
perfect prediction."""

import torch

from poisonlab.mner.anchors import STRIDES, AnchorGrid
from poisonlab.mner.grounding import build_targets, grounded_features, predict_boxes
from poisonlab.mner.losses import confidence_loss, regression_loss


def test_assignment_picks_the_best_shaped_anchor_and_the_centre_cell():
    grid = AnchorGrid(416)  # anchors in their native pixels
    scale, anchor, row, col, target = grid.assign(torch.tensor([100.0, 40.0, 216.0, 130.0]))
    assert (scale, anchor) == (2, 0)  # 116 x 90 is exactly YOLOv3's first large anchor
    assert (row, col) == (int(85 // 32), int(158 // 32))
    assert torch.allclose(target, torch.tensor([158 / 32 - 4, 85 / 32 - 2, 0.0, 0.0]), atol=1e-6)
    small = grid.assign(torch.tensor([10.0, 10.0, 20.0, 23.0]))
    assert small[:2] == (0, 0)  # 10 x 13 at stride 8


def test_encode_decode_round_trip():
    grid = AnchorGrid(128)
    for box in ([3.0, 5.0, 20.0, 30.0], [40.0, 10.0, 110.0, 90.0], [0.0, 60.0, 128.0, 128.0]):
        scale, anchor, row, col, target = grid.assign(torch.tensor(box))
        decoded = grid.decode(scale, torch.tensor(anchor), torch.tensor(float(row)),
                              torch.tensor(float(col)), target)
        assert torch.allclose(decoded, torch.tensor(box), atol=1e-4)


def _perfect_outputs(grid, targets, rows):
    outputs = [torch.zeros(rows, 3, 5, n, n) for n in grid.grid_sizes]
    for i in range(len(targets)):
        tx, ty, tw, th = targets.offsets[i]
        g = outputs[int(targets.scale[i])]
        g[targets.row[i], targets.anchor[i], :, targets.cell_y[i], targets.cell_x[i]] = torch.tensor(
            [torch.logit(tx), torch.logit(ty), tw, th, 50.0])
    return outputs


def test_perfect_prediction_gives_zero_regression_loss_and_exact_boxes():
    grid = AnchorGrid(128)
    boxes = {0: (torch.tensor([[10.0, 12.0, 50.0, 60.0]]), 1.0),
             2: (torch.tensor([[70.0, 20.0, 120.0, 100.0]]), 0.5)}
    targets = build_targets(grid, boxes)
    outputs = _perfect_outputs(grid, targets, rows=3)
    assert regression_loss(outputs, targets).item() < 1e-10
    assert confidence_loss(outputs, torch.zeros(3), targets).item() < 1e-6
    predicted = predict_boxes(grid, outputs)
    assert torch.allclose(predicted[0], boxes[0][0][0], atol=1e-3)
    assert torch.allclose(predicted[2], boxes[2][0][0], atol=1e-3)
    wrong = [o.clone() for o in outputs]
    wrong[int(targets.scale[0])][0, :, 2] += 1.0
    assert regression_loss(wrong, targets).item() > 0


def test_weak_boxes_are_down_weighted():
    grid = AnchorGrid(128)
    box = torch.tensor([[10.0, 12.0, 50.0, 60.0]])
    outputs = [torch.zeros(1, 3, 5, n, n) for n in grid.grid_sizes]
    manual = regression_loss(outputs, build_targets(grid, {0: (box, 1.0)}))
    weak = regression_loss(outputs, build_targets(grid, {0: (box, 0.5)}))
    assert torch.isclose(weak, manual * 0.5)
    assert STRIDES == (8, 16, 32)


def test_grounded_features_read_the_confident_cell():
    maps = [torch.randn(2, 4, n, n) for n in (4, 2, 1)]
    grounding = [torch.zeros(2, 3, 5, n, n) for n in (4, 2, 1)]
    grounding[1][0, 2, 4, 1, 0] = 60.0  # row 0: scale 1, anchor 2, cell (1, 0)
    grounding[0][1, 0, 4, 3, 3] = 60.0  # row 1: scale 0, anchor 0, cell (3, 3)
    pooled = grounded_features(grounding, torch.zeros(2), maps)
    assert torch.allclose(pooled[0], maps[1][0, :, 1, 0], atol=1e-5)
    assert torch.allclose(pooled[1], maps[0][1, :, 3, 3], atol=1e-5)
    nothing = grounded_features(grounding, torch.tensor([80.0, 80.0]), maps)
    assert nothing.abs().max() < 1e-6  # a confident "no region" reads nothing


def test_absent_rows_are_trained_towards_no_region():
    grid = AnchorGrid(128)
    outputs = [torch.zeros(2, 3, 5, n, n) for n in grid.grid_sizes]
    targets = build_targets(grid, {0: (torch.tensor([[10.0, 12.0, 50.0, 60.0]]), 1.0)}, absent=[1])
    assert targets.absent.tolist() == [1]
    confident_none = confidence_loss(outputs, torch.tensor([0.0, 30.0]), targets)
    confident_some = confidence_loss(outputs, torch.tensor([0.0, -30.0]), targets)
    assert confident_none < confident_some
