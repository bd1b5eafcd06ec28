"""S3DIS tables (a leaf module shared by ``data``, ``models`` and the ``segment`` tool).

Class index = line of the official ``meta/class_names.txt`` (``collect_indoor3d_data`` writes
it as the 7th column; any other annotation name, e.g. the 'stairs' of some rooms, became
``clutter``). Colours are the official ``g_class2color`` of ``indoor3d_util.py`` /
``main_test.py``. Room counts are those of the aligned v1.2 release (272 rooms)."""

S3DIS_CLASSES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door",
    "table", "chair", "sofa", "bookcase", "board", "clutter",
)
S3DIS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 255), (100, 100, 255), (200, 200, 100),
    (170, 120, 200), (255, 0, 0), (200, 100, 100), (10, 200, 100), (200, 200, 200), (50, 50, 50),
)
S3DIS_NUM_CLASSES = 13
# rooms per area in the official preprocessed release (collect_indoor3d_data.py)
S3DIS_ROOMS_PER_AREA: dict[int, int] = {1: 44, 2: 40, 3: 23, 4: 49, 5: 68, 6: 48}
S3DIS_TEST_AREA = 5
