"""ShapeNetPart label tables (a leaf module shared by ``data`` and ``models``).

Category index = line order of ``synsetoffset2category.txt`` (alphabetical: Airplane 0 ...
Table 15); part labels 0-49 follow the same order (official ``seg_classes``)."""

SHAPENETPART_CATEGORIES: tuple[str, ...] = (
    "Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife",
    "Lamp", "Laptop", "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table",
)
SHAPENETPART_SEG_CLASSES: dict[str, tuple[int, ...]] = {
    "Airplane": (0, 1, 2, 3), "Bag": (4, 5), "Cap": (6, 7), "Car": (8, 9, 10, 11),
    "Chair": (12, 13, 14, 15), "Earphone": (16, 17, 18), "Guitar": (19, 20, 21), "Knife": (22, 23),
    "Lamp": (24, 25, 26, 27), "Laptop": (28, 29), "Motorbike": (30, 31, 32, 33, 34, 35), "Mug": (36, 37),
    "Pistol": (38, 39, 40), "Rocket": (41, 42, 43), "Skateboard": (44, 45, 46), "Table": (47, 48, 49),
}
SHAPENETPART_NUM_PARTS = 50
SHAPENETPART_NUM_CATEGORIES = 16
