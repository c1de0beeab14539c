"""The dashboard's pages, read by shell.py (st.navigation) and app.py (the page URLs it serves): plain data, so the
server can read it without running the shell."""

# (file, title, icon, url path); the home page is the default and lives at "/".
PAGES = [
    ("pages/home.py", "Runs", ":material/list:", "runs"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/data.py", "Data", ":material/dataset:", "data"),
    ("pages/mispredictions.py", "Mispredictions", ":material/error:", "mispredictions"),
    ("pages/confusion.py", "Confusion", ":material/grid_on:", "confusion"),
    ("pages/labels.py", "Suspicious labels", ":material/rule:", "labels"),
    ("pages/cartography.py", "Training cartography", ":material/map:", "cartography"),
    ("pages/feature_maps.py", "Feature maps", ":material/layers:", "feature-maps"),
    ("pages/embeddings.py", "Embeddings", ":material/scatter_plot:", "embeddings"),
    ("pages/draw.py", "Draw", ":material/draw:", "draw"),
    ("pages/compare.py", "Compare", ":material/compare:", "compare"),
    ("pages/sweeps.py", "Sweeps", ":material/tune:", "sweeps"),
]

# url paths of the pages whose own live poller (pages/_live.py) writes the sidebar's figures of a training run; on
# the others the sidebar mounts one of its own ("" is the home page's path)
LIVE_PAGES = {"", "runs", "train"}
