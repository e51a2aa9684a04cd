"""Landmark index sets of mediapipe's 468-point face mesh: every place on the face the serving code names.

Outlines are ordered around their shape (as in mediapipe's face_mesh_connections.py). Pairs are the subject's
right side first, then the left (index them with `side` 0 or 1); "right" is the subject's own, on the image's
left.
"""

from __future__ import annotations

# Outlines: the masks are filled from these.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
RIGHT_EYE_RING = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE_RING = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_BROW = [70, 63, 105, 66, 107, 55, 65, 52, 53, 46]  # upper edge outward-in, then lower edge back
LEFT_BROW = [300, 293, 334, 296, 336, 285, 295, 282, 283, 276]

# Lines across the face, from the subject's right to left.
FOREHEAD_TOP = [54, 103, 67, 109, 10, 338, 297, 332, 284]  # the top of the mesh, near the hairline
BROW_TOP = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # the upper edge of both brows
UPPER_LIP = [185, 40, 39, 37, 0, 267, 269, 270, 409]  # the upper lip's outer edge
LOWER_LID = ([33, 7, 163, 144, 145, 153, 154, 155, 133], [263, 249, 390, 373, 374, 380, 381, 382, 362])

# Single points, as (right, left) pairs.
EYE_OUTER = (33, 263)  # outer eye corners
BROW_OUTER = (70, 300)
BROW_INNER = (107, 336)
CHEEKBONE = (116, 345)
CHEEK = (205, 425)
NOSE_WING = (129, 358)
MOUTH_CORNER = (61, 291)
JOWL = (172, 397)
CHIN_SIDE = (176, 400)
NOSE_TIP = 4
CHIN = 152

# Bare skin on nearly every face (no fringe, a beard rarely): the two cheeks and two more points on them.
CHEEK_SAMPLES = (205, 425, 50, 280)
# The five places of dlib's 5-point shape (outer and inner corner of the eye on the image's right, outer and
# inner on its left, the base of the nose): what the age network's chip is aligned by.
DLIB_FIVE = [263, 362, 33, 133, 2]
