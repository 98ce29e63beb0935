"""The add-on's entries in Blender's menus: Add > Z-Depth Encode / Z-Depth Decode in the
compositor (``zdepth.add_node_group``).
"""

from ..nodes import DECODE_GROUP, ENCODE_GROUP


def draw_add_menu(self, context):
    """The compositor's Add menu: the "Z-Depth Encode" and "Z-Depth Decode" nodes."""
    space = context.space_data
    if getattr(space, "tree_type", None) != "CompositorNodeTree":
        return
    self.layout.separator()
    self.layout.operator("zdepth.add_node_group", text=ENCODE_GROUP, icon="NODETREE")
    op = self.layout.operator("zdepth.add_node_group", text=DECODE_GROUP, icon="NODETREE")
    op.group = "DECODE"
