from freshet.kit.service import serve
from freshet.previewer.app import PreviewerSettings, create_app

settings = PreviewerSettings()
serve(create_app(settings), settings)
