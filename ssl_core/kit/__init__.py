"""What plugins and the engine share: file and image/video I/O, devices and transfer, memory budgets, printing, multi-process helpers and the contrastive toolkit."""
